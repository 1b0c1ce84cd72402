//! Throwaway coordinator servers for tests (feature `testutil`): a ZooKeeper server or
//! ensemble from Debian's `zookeeper` package and an `etcd` server, each on free loopback
//! ports with its data in a temp dir, killed when dropped.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A free TCP port on 127.0.0.1 below the ephemeral range (see [`testkit::free_port`]).
pub fn free_port() -> u16 {
    testkit::free_port()
}

fn wait_until(deadline: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Sends a ZooKeeper four-letter command and returns the reply.
pub fn zk_four_letter(port: u16, cmd: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(cmd.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Spawns `cmd` from one long-lived helper thread with `PR_SET_PDEATHSIG = SIGKILL`, so a
/// server held in a `static` (never dropped) still dies with the test process.
pub fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    use std::sync::{mpsc, Mutex, OnceLock};
    type Req = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Req>>> = OnceLock::new();
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Req>();
        std::thread::Builder::new()
            .name("coord-testutil-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or(());
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = spawner
        .lock()
        .map_err(|_| io::Error::other("spawner poisoned"))?
        .send((cmd, reply_tx));
    sent.map_err(|_| io::Error::other("spawner thread gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread gone"))?
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// One ZooKeeper server process (standalone or a member of a [`ZkEnsemble`]).
pub struct ZkNode {
    child: Option<Child>,
    dir: PathBuf,
    /// Client port.
    pub port: u16,
}

impl ZkNode {
    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::File::create(self.dir.join("zookeeper.log"))?;
        let mut cmd = Command::new("java");
        cmd.args([
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            "-Dzookeeper.admin.enableServer=false",
            "-cp",
            "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        ])
        .arg(self.dir.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        self.child = Some(spawn_tied(cmd)?);
        Ok(())
    }

    /// True when the server answers `srvr` with a serving mode.
    pub fn is_serving(&self) -> bool {
        zk_four_letter(self.port, "srvr")
            .map(|r| r.contains("Mode:"))
            .unwrap_or(false)
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again with the same config and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Freezes the process (SIGSTOP); sessions it serves expire once it resumes.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ZkNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A ZooKeeper ensemble (1 node = a standalone server).
pub struct ZkEnsemble {
    /// The members; index = myid - 1.
    pub nodes: Vec<ZkNode>,
    _dir: TempDir,
}

/// A single ZooKeeper server.
pub type ZkServer = ZkEnsemble;

impl ZkEnsemble {
    /// Starts one standalone server and waits until it serves.
    pub fn start() -> io::Result<Self> {
        Self::start_nodes(1)
    }

    /// Starts `n` servers forming an ensemble and waits until each serves.
    pub fn start_nodes(n: usize) -> io::Result<Self> {
        if !std::path::Path::new("/usr/share/java/zookeeper.jar").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "Debian package `zookeeper` is not installed (/usr/share/java/zookeeper.jar)",
            ));
        }
        let dir = tempfile::Builder::new().prefix("coord-zk-").tempdir()?;
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let mut nodes = Vec::new();
        for (i, (client, peer, elect)) in ports.iter().enumerate() {
            let ndir = dir.path().join(format!("node{}", i + 1));
            std::fs::create_dir_all(ndir.join("data"))?;
            let mut cfg = format!(
                "tickTime=500\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={client}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\nminSessionTimeout=1000\n\
                 maxSessionTimeout=60000\n4lw.commands.whitelist=ruok,srvr,stat,mntr\n\
                 maxClientCnxns=0\n",
                ndir.join("data").display()
            );
            if n > 1 {
                std::fs::write(ndir.join("data/myid"), format!("{}\n", i + 1))?;
                for (j, (_, p, e)) in ports.iter().enumerate() {
                    cfg.push_str(&format!("server.{}=127.0.0.1:{p}:{e}\n", j + 1));
                }
            }
            let _ = peer;
            let _ = elect;
            std::fs::write(ndir.join("zoo.cfg"), cfg)?;
            let mut node = ZkNode {
                child: None,
                dir: ndir,
                port: *client,
            };
            node.spawn()?;
            nodes.push(node);
        }
        let ens = ZkEnsemble { nodes, _dir: dir };
        if !wait_until(Duration::from_secs(60), || {
            ens.nodes.iter().all(ZkNode::is_serving)
        }) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("zookeeper did not start; see {}", ens.log_hint()),
            ));
        }
        Ok(ens)
    }

    fn log_hint(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.dir.join("zookeeper.log").display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The connect string: `127.0.0.1:p1,127.0.0.1:p2,…`.
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(ZkNode::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until node `i` serves again (after a restart).
    pub fn wait_serving(&self, i: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.nodes[i].is_serving())
    }
}

/// One etcd server.
pub struct EtcdServer {
    child: Option<Child>,
    dir: TempDir,
    /// Client port.
    pub port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts `/usr/bin/etcd` on free loopback ports and waits until it answers.
    pub fn start() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("coord-etcd-").tempdir()?;
        let mut s = EtcdServer {
            child: None,
            dir,
            port: free_port(),
            peer_port: free_port(),
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let client = format!("http://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log"))?;
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg("coordtest")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("coordtest={peer}")])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(spawn_tied(cmd)?);
        let port = self.port;
        if !wait_until(Duration::from_secs(30), || health(port).unwrap_or(false)) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "etcd did not start; see {}",
                    self.dir.path().join("etcd.log").display()
                ),
            ));
        }
        Ok(())
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL).
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again with the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }
}

fn health(port: u16) -> io::Result<bool> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.contains("\"health\":\"true\"") || out.contains("\"health\": \"true\""))
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
