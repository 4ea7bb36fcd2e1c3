//! A real `redis-server` for one test, on a free 127.0.0.1 port, without
//! persistence except what [`RedisServer::stop`] saves for a restart;
//! killed when dropped.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// `requirepass`, when the server asks for one.
    password: Option<String>,
    /// The TLS port and the CA that signed its certificate, when the
    /// server speaks TLS too.
    tls: Option<Tls>,
}

/// A TLS port of the server.
pub struct Tls {
    pub port: u16,
    /// PEM of the CA that signed the server's certificate (for 127.0.0.1).
    pub ca_file: std::path::PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` (installed by `.ci/run` from Debian's packages)
    /// and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Like [`Self::start`], with `requirepass`: every client must AUTH.
    pub async fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned())).await
    }

    async fn start_with(password: Option<String>) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            password,
            tls: None,
        };
        server.spawn().await;
        server
    }

    /// Like [`Self::start`], with a TLS port too (Debian's redis-server is
    /// built with TLS), its certificate for 127.0.0.1 signed by a CA made
    /// with rcgen for this server. The plain port stays for the harness.
    pub async fn start_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "ordergate test Redis CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let ca_file = write("ca.pem", ca_cert.pem());
        write("redis.pem", leaf.pem());
        write("redis.key", key.serialize_pem());
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
            password: None,
            tls: Some(Tls {
                port: free_port(),
                ca_file,
            }),
        };
        server.spawn().await;
        server
    }

    /// The TLS port, when [`Self::start_tls`] made the server.
    pub fn tls(&self) -> &Tls {
        self.tls.as_ref().expect("a server started with TLS")
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        if let Some(tls) = &self.tls {
            let file = |name: &str| self.dir.path().join(name);
            cmd.args(["--tls-port", &tls.port.to_string()])
                .arg("--tls-cert-file")
                .arg(file("redis.pem"))
                .arg("--tls-key-file")
                .arg(file("redis.key"))
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca_file)
                .args(["--tls-auth-clients", "no"]);
        }
        let child = cmd
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); `apt-get install redis-server`")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command(&["PING"]).await.as_deref() == Some("+PONG") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// `rediss://127.0.0.1:<tls port>/0`.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.tls().port)
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server, saving its data for [`Self::restart`].
    pub async fn stop(&mut self) {
        let _ = self.command(&["SHUTDOWN", "SAVE"]).await;
        if let Some(mut child) = self.child.take()
            && tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port with the data it saved.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running redis-server");
        self.spawn().await;
    }

    /// One command in RESP over a new connection; the first line of the
    /// answer (`None` when the server cannot be reached).
    pub async fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = tokio::time::timeout(
            Duration::from_secs(1),
            TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        .ok()?
        .ok()?;
        let mut buf = vec![0u8; 1 << 16];
        if let Some(p) = &self.password {
            let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len());
            s.write_all(auth.as_bytes()).await.ok()?;
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .ok()?
                .ok()?;
        }
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(out.as_bytes()).await.ok()?;
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some(text.lines().next().unwrap_or_default().to_owned())
    }

    /// Every key in the server, read with the `redis` crate.
    pub async fn keys(&self) -> Vec<String> {
        let url = match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// A port the system just handed out, released for redis-server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
