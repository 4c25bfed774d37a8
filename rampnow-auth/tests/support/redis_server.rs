//! A real `redis-server` for a test: on 127.0.0.1, a free port, its own temporary directory,
//! no persistence; stopped (killed and waited for) on drop.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to `1` (CI does) to fail, rather than skip, when `redis-server` cannot be run.
pub const REQUIRE_ENV: &str = "RAMPNOW_REQUIRE_REDIS";

pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers `PING`. `None` (after saying why on
    /// stderr) when there is no `redis-server`, unless `RAMPNOW_REQUIRE_REDIS=1`: then it
    /// panics.
    pub fn start(test: &str) -> Option<RedisServer> {
        match RedisServer::try_start() {
            Ok(server) => Some(server),
            Err(why) => {
                if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
                    panic!("{test}: {why}, and {REQUIRE_ENV}=1");
                }
                // Straight to stderr, not `eprintln!`: the test harness captures that and shows
                // it only for failures, and a skip should be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {test}: {why} (set {REQUIRE_ENV}=1 to make this a failure)"
                );
                None
            }
        }
    }

    fn try_start() -> Result<RedisServer, String> {
        // A free port: bind to port 0, note the port, let it go for redis-server.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let dir =
            std::env::temp_dir().join(format!("rampnow-auth-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server could not be started ({e}); install it (apt-get install redis-server)"))?;
        let mut server = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.ping() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server exited at once ({status})"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.kill();
        Err("redis-server did not answer PING within 10 s".to_owned())
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A connection that reconnects on its own.
    pub async fn connect(&self) -> redis::aio::ConnectionManager {
        let client = redis::Client::open(self.url()).unwrap();
        redis::aio::ConnectionManager::new(client).await.unwrap()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the server now (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
