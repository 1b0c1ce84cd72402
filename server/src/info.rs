//! `INFO`: Redis's sections and field names, filled from every core.

use std::fmt::Write;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::command::COMMANDS;

use crate::alloc;
use crate::core::Core;
use crate::shard::CmdStat;

/// The Redis version we report (the command set and replies follow Redis 7.0).
pub const REDIS_VERSION: &str = "7.0.15";

struct CoreStats {
    keys: Vec<(usize, usize)>,
    stats: Vec<CmdStat>,
    expired: u64,
    evicted: u64,
}

fn human(n: usize) -> String {
    let f = n as f64;
    if f >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", f / 1024.0 / 1024.0 / 1024.0)
    } else if f >= 1024.0 * 1024.0 {
        format!("{:.2}M", f / 1024.0 / 1024.0)
    } else if f >= 1024.0 {
        format!("{:.2}K", f / 1024.0)
    } else {
        format!("{n}B")
    }
}

/// Render the requested sections (`default` when none, `all`/`everything` for all).
pub async fn render(core: &Rc<Core>, sections: &[Bytes]) -> String {
    let want: Vec<String> = sections
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_lowercase())
        .collect();
    let all = want.iter().any(|w| w == "all" || w == "everything");
    let default = want.is_empty() || want.iter().any(|w| w == "default");
    let show =
        |name: &str| all || want.iter().any(|w| w == name) || (default && name != "commandstats");
    let per_core: Vec<CoreStats> = core
        .broadcast(|s| CoreStats {
            keys: s.dbs.iter().map(|d| (d.len(), d.volatile())).collect(),
            stats: s.stats.clone(),
            expired: s.expired_keys,
            evicted: s.evicted_keys,
        })
        .await;
    let sh = &core.shared;
    let cfg = sh.config();
    let mut o = String::new();
    let uptime = sh.started.elapsed().as_secs();
    if show("server") {
        let _ = write!(
            o,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\ncodis_rs_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nhz:10\r\nexecutor_cores:{}\r\nexecutable:{}\r\nconfig_file:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            sh.run_id,
            sh.tcp_port.load(Ordering::Relaxed),
            crate::shared::now_ms() * 1000,
            uptime / 86400,
            sh.ncores,
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            cfg.config_file,
        );
    }
    if show("clients") {
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:{}\r\ntracking_clients:0\r\n\r\n",
            sh.connected.load(Ordering::Relaxed),
            cfg.maxclients,
            crate::blocking::BLOCKED_CLIENTS.load(Ordering::Relaxed),
        );
    }
    if show("memory") {
        let used = alloc::used_memory();
        let rss = alloc::rss_bytes();
        let max = crate::evict::maxmemory();
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nmaxmemory:{max}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_allocator:mimalloc\r\n",
            human(used),
            human(rss),
            human(max as usize),
            crate::evict::policy().name(),
            if used > 0 { rss as f64 / used as f64 } else { 0.0 },
        );
        // Scripts and functions share each core's Lua state: its memory is reported as EVAL's
        // (`used_memory_vm_eval`), `used_memory_vm_functions` is 0.
        let (lua, nscripts, script_bytes) = crate::script::memory_stats();
        let (nfunctions, function_bytes) = crate::function::memory_stats();
        let _ = write!(
            o,
            "used_memory_lua:{lua}\r\nused_memory_vm_eval:{lua}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{script_bytes}\r\nnumber_of_cached_scripts:{nscripts}\r\nnumber_of_functions:{nfunctions}\r\nused_memory_vm_functions:0\r\nused_memory_vm_total:{lua}\r\nused_memory_vm_total_human:{}\r\nused_memory_functions:{function_bytes}\r\nused_memory_scripts:{}\r\nused_memory_scripts_human:{}\r\n\r\n",
            human(lua),
            human(lua),
            script_bytes + function_bytes,
            human(script_bytes + function_bytes),
        );
    }
    if show("persistence") {
        o.push_str(&crate::persist::info(core).await);
    }
    let total_calls: u64 = per_core
        .iter()
        .flat_map(|c| c.stats.iter())
        .map(|s| s.calls)
        .sum();
    if show("stats") {
        let expired: u64 = per_core.iter().map(|c| c.expired).sum();
        let evicted: u64 = per_core.iter().map(|c| c.evicted).sum();
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{total_calls}\r\nrejected_connections:{}\r\nexpired_keys:{expired}\r\nevicted_keys:{evicted}\r\n",
            sh.total_connections.load(Ordering::Relaxed),
            sh.rejected_connections.load(Ordering::Relaxed),
        );
        crate::pubsub::stats_lines(&mut o);
        crate::repl::stats_lines(&mut o);
        crate::slotmove::stats_lines(&mut o);
        crate::multi::stats_lines(&mut o);
        o.push_str("\r\n");
    }
    if show("replication") {
        crate::repl::info_section(&mut o);
    }
    if show("cpu") {
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage fills the struct we own.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        let _ = write!(
            o,
            "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\n\r\n",
            t(ru.ru_stime),
            t(ru.ru_utime)
        );
    }
    if show("commandstats") {
        o.push_str("# Commandstats\r\n");
        for (i, c) in COMMANDS.iter().enumerate() {
            let calls: u64 = per_core.iter().map(|p| p.stats[i].calls).sum();
            if calls == 0 {
                continue;
            }
            let usec = crate::ticks::to_usec(per_core.iter().map(|p| p.stats[i].ticks).sum());
            let failed: u64 = per_core.iter().map(|p| p.stats[i].failed).sum();
            let _ = write!(
                o,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={:.2},rejected_calls=0,failed_calls={failed}\r\n",
                c.name,
                usec as f64 / calls as f64
            );
        }
        o.push_str("\r\n");
    }
    if show("keyspace") {
        o.push_str("# Keyspace\r\n");
        let ndb = per_core.first().map_or(0, |c| c.keys.len());
        for db in 0..ndb {
            let keys: usize = per_core.iter().map(|c| c.keys[db].0).sum();
            let expires: usize = per_core.iter().map(|c| c.keys[db].1).sum();
            if keys > 0 {
                let _ = write!(o, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
        o.push_str("\r\n");
    }
    while o.ends_with("\r\n\r\n") {
        o.truncate(o.len() - 2);
    }
    o
}
