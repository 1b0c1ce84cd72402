//! codis-server started with a redis.conf as redis-server would be: `include`, `daemonize yes`,
//! `logfile`, `pidfile` and the config file's `loglevel` are honoured; directives that only tune
//! Redis internals are accepted with one warning; directives that would change behaviour
//! (`rename-command`, `cluster-enabled yes`) stop the start-up with the file and line.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the daemonized server (found through its pid file) if a test fails half way.
struct Daemon {
    pid: Option<i32>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            // SAFETY: kill(2) on the pid the server wrote; at worst the process is already gone.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Starts `codis-server <conf> <extra…>`, which must daemonize: the command itself exits 0 at
/// once, and the server answers on `port` with its pid in `pidfile`.
fn start_daemon(
    conf: &Path,
    extra: &[&str],
    port: u16,
    pidfile: &Path,
) -> (Daemon, redis::Connection) {
    let status = Command::new(testkit::bin_path("codis-server"))
        .arg(conf)
        .args(["--port", &port.to_string(), "--cores", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .status()
        .expect("run codis-server");
    assert!(
        status.success(),
        "the launching process exits 0: {status:?}"
    );
    testkit::wait_until("pid file", || pidfile.exists());
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon = Daemon { pid: Some(pid) };
    assert!(alive(pid), "pid {pid} from the pid file is not running");
    assert!(testkit::wait_port(port, Duration::from_secs(20)));
    let con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    (daemon, con)
}

fn shutdown(mut daemon: Daemon, mut con: redis::Connection, pidfile: &Path) {
    let pid = daemon.pid.unwrap();
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut con);
    testkit::wait_until("exit after SHUTDOWN", || !alive(pid));
    daemon.pid = None;
    assert!(!pidfile.exists(), "the pid file is removed at shutdown");
}

#[test]
fn a_redis_conf_with_include_daemonize_logfile_and_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let pidfile = dir.path().join("server.pid");
    let inc = dir.path().join("extra.conf");
    std::fs::write(&inc, "maxclients 77\n").unwrap();
    let conf = dir.path().join("redis.conf");
    std::fs::write(
        &conf,
        format!(
            "# as a Redis 7 redis.conf has them\n\
             daemonize yes\n\
             pidfile {}\n\
             logfile \"{}\"\n\
             loglevel notice\n\
             dir {}\n\
             protected-mode yes\n\
             tcp-backlog 511\n\
             lazyfree-lazy-eviction no\n\
             repl-diskless-sync yes\n\
             cluster-enabled no\n\
             include {}\n",
            pidfile.display(),
            log.display(),
            dir.path().display(),
            inc.display()
        ),
    )
    .unwrap();
    let port = testkit::free_port();
    let (daemon, mut con) = start_daemon(&conf, &[], port, &pidfile);
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["maxclients", "77"], "the included file applies");
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    let shown = info
        .lines()
        .find_map(|l| l.strip_prefix("config_file:"))
        .unwrap();
    assert_eq!(
        Path::new(shown),
        std::fs::canonicalize(&conf).unwrap(),
        "INFO server config_file"
    );
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("daemonize")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["daemonize", "yes"]);
    testkit::wait_until("the log file", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Ready to accept connections")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("accepted and ignored"), "{text}");
    assert!(text.contains("'tcp-backlog 511'"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no terminal colours in a log file"
    );

    // CONFIG SET loglevel takes effect at once: a protocol error is a debug event.
    let garbage = |port: u16| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"*1\r\n$-5\r\n").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    };
    garbage(port);
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("loglevel")
        .arg("loud")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(
        e.to_string().contains("must be one of the following"),
        "{e}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("loglevel")
        .arg("DEBUG")
        .query(&mut con)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("loglevel")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, ["loglevel", "debug"]);
    garbage(port);
    testkit::wait_until("a debug line", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("protocol error")
            .count()
            == 1
    });

    shutdown(daemon, con, &pidfile);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ready to exit"), "{text}");
}

/// The redis.conf of Debian's redis-server package (when installed), with only the port, the
/// directory and the files moved: codis-server takes it as it is.
#[test]
fn the_system_redis_conf_of_the_redis_server_package() {
    let system = Path::new("/etc/redis/redis.conf");
    if !system.exists() {
        eprintln!("skipped: no {}", system.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let pidfile = dir.path().join("server.pid");
    let port = testkit::free_port();
    let d = dir.path().to_str().unwrap().to_string();
    let (l, p) = (
        log.to_str().unwrap().to_string(),
        pidfile.to_str().unwrap().to_string(),
    );
    let extra = [
        "--dir",
        &d,
        "--logfile",
        &l,
        "--pidfile",
        &p,
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
    ];
    let (daemon, mut con) = start_daemon(system, &extra, port, &pidfile);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    shutdown(daemon, con, &pidfile);
}

fn refused(conf_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("redis.conf");
    std::fs::write(&conf, conf_text).unwrap();
    let out = Command::new(testkit::bin_path("codis-server"))
        .arg(&conf)
        .args(["--port", &testkit::free_port().to_string(), "--cores", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run codis-server");
    assert!(
        !out.status.success(),
        "{conf_text:?} must stop the start-up"
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn directives_that_would_change_behaviour_are_errors() {
    let err = refused("port 0\nrename-command FLUSHALL \"\"\n");
    assert!(err.contains("redis.conf:2"), "{err}");
    assert!(err.contains("rename-command"), "{err}");
    let err = refused("cluster-enabled yes\n");
    assert!(err.contains("supports only 'cluster-enabled no'"), "{err}");
    let err = refused("include /nonexistent/other.conf\n");
    assert!(err.contains("/nonexistent/other.conf"), "{err}");
}
