//! Where each model lives: Codis 3.2's layout under `/codis3/{product}`, plus this project's
//! acknowledgement, liveness and version nodes.
//!
//! ```text
//! /codis3/{product}/topom                  product lock + Topom JSON (ephemeral here)
//! /codis3/{product}/slots/slot-{%04d}      SlotMapping JSON (absent = offline, group 0)
//! /codis3/{product}/group/group-{%04d}     Group JSON
//! /codis3/{product}/proxy/proxy-{token}    Proxy JSON (persistent registration)
//! /codis3/{product}/sentinel               Sentinel JSON
//! /codis3/{product}/ack/proxy-{token}      ProxyAck JSON: slot states the proxy has applied
//! /codis3/{product}/alive/proxy-{token}    ProxyAlive JSON, ephemeral: the proxy process is up
//! /codis3/{product}/version                topology version (JSON number), bumped on each change
//! ```

use crate::error::{Error, Result};

/// Root of every product.
pub const CODIS_ROOT: &str = "/codis3";

/// Checks a product name against Codis' `^\w[\w\.\-]*$`.
pub fn validate_product(name: &str) -> Result<()> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if word(c) => chars.all(|c| word(c) || c == '.' || c == '-'),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::BadProduct(name.to_string()))
    }
}

/// Checks that `path` is absolute with non-empty, non-hidden components (`/a/b`), or `/`.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::BadPath {
            path: path.to_string(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad("must not end with '/'");
    }
    for comp in path[1..].split('/') {
        if comp.is_empty() {
            return bad("empty component");
        }
        if comp.starts_with('.') {
            return bad("components must not start with '.'");
        }
        if comp.contains('\0') {
            return bad("NUL in component");
        }
    }
    Ok(())
}

/// Joins a parent path and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The paths of one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductPaths {
    product: String,
    base: String,
}

impl ProductPaths {
    /// Paths for `product`, validated.
    pub fn new(product: &str) -> Result<Self> {
        validate_product(product)?;
        Ok(ProductPaths {
            product: product.to_string(),
            base: format!("{CODIS_ROOT}/{product}"),
        })
    }
    /// The product name.
    pub fn product(&self) -> &str {
        &self.product
    }
    /// `/codis3/{product}`.
    pub fn base(&self) -> &str {
        &self.base
    }
    /// `/codis3/{product}/topom`: the product lock.
    pub fn topom(&self) -> String {
        format!("{}/topom", self.base)
    }
    /// `/codis3/{product}/slots`.
    pub fn slots_dir(&self) -> String {
        format!("{}/slots", self.base)
    }
    /// `/codis3/{product}/slots/slot-{%04d}`.
    pub fn slot(&self, sid: u32) -> String {
        format!("{}/slots/slot-{sid:04}", self.base)
    }
    /// `/codis3/{product}/group`.
    pub fn groups_dir(&self) -> String {
        format!("{}/group", self.base)
    }
    /// `/codis3/{product}/group/group-{%04d}`.
    pub fn group(&self, gid: u32) -> String {
        format!("{}/group/group-{gid:04}", self.base)
    }
    /// `/codis3/{product}/proxy`.
    pub fn proxies_dir(&self) -> String {
        format!("{}/proxy", self.base)
    }
    /// `/codis3/{product}/proxy/proxy-{token}`.
    pub fn proxy(&self, token: &str) -> String {
        format!("{}/proxy/proxy-{token}", self.base)
    }
    /// `/codis3/{product}/sentinel`.
    pub fn sentinel(&self) -> String {
        format!("{}/sentinel", self.base)
    }
    /// `/codis3/{product}/ack`.
    pub fn acks_dir(&self) -> String {
        format!("{}/ack", self.base)
    }
    /// `/codis3/{product}/ack/proxy-{token}`.
    pub fn ack(&self, token: &str) -> String {
        format!("{}/ack/proxy-{token}", self.base)
    }
    /// `/codis3/{product}/alive`.
    pub fn alive_dir(&self) -> String {
        format!("{}/alive", self.base)
    }
    /// `/codis3/{product}/alive/proxy-{token}`.
    pub fn alive(&self, token: &str) -> String {
        format!("{}/alive/proxy-{token}", self.base)
    }
    /// `/codis3/{product}/version`.
    pub fn version(&self) -> String {
        format!("{}/version", self.base)
    }
    /// True when a change at `path` alters the topology snapshot (not acks, not liveness).
    pub fn is_topology_path(&self, path: &str) -> bool {
        match path.strip_prefix(self.base.as_str()) {
            Some("") => true,
            Some(rest) => {
                !(rest.starts_with("/ack/")
                    || rest == "/ack"
                    || rest.starts_with("/alive/")
                    || rest == "/alive")
                    && rest.starts_with('/')
            }
            None => false,
        }
    }
}

/// Parses the number in `slot-0042` / `group-0007`.
pub(crate) fn parse_id(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names() {
        for ok in ["codis-demo", "a", "_x", "a.b-c_9", "é"] {
            assert!(validate_product(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "a:b", "../x"] {
            assert!(validate_product(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layout() {
        let p = ProductPaths::new("demo").unwrap();
        assert_eq!(p.slot(7), "/codis3/demo/slots/slot-0007");
        assert_eq!(p.group(12), "/codis3/demo/group/group-0012");
        assert_eq!(p.proxy("ab"), "/codis3/demo/proxy/proxy-ab");
        assert_eq!(p.topom(), "/codis3/demo/topom");
        assert!(p.is_topology_path("/codis3/demo/slots/slot-0001"));
        assert!(!p.is_topology_path("/codis3/demo/ack/proxy-a"));
        assert!(!p.is_topology_path("/codis3/demo2/slots/slot-0001"));
        assert!(!p.is_topology_path("/codis3/demox"));
    }

    #[test]
    fn paths() {
        assert!(validate_path("/a/b").is_ok());
        assert!(validate_path("/").is_ok());
        for bad in ["a", "/a/", "//a", "/a/../b", "/.x"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }
}
