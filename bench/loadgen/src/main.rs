//! Loopback-only load generator for the sticky-session-rs benchmark.
//!
//! HTTP mode: every request is a brand-new TCP connection (`Connection: close`),
//! bound round-robin to a range of loopback source addresses, optionally
//! preceded by a PROXY v1 line or carrying X-Forwarded-For / `?sid=`.
//!
//! Socket.IO mode (`--socketio N`): N engine.io v4 long-polling sessions
//! (handshake, namespace connect, event with ack, close), each request on a
//! new connection from the session's own source address.
//!
//! Bounded by a connection/session count AND a duration; refuses any target
//! or source address outside 127.0.0.0/8 / ::1. Prints one JSON line.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const USAGE: &str = "\
usage: loadgen --target HOST:PORT [options]
  -t, --target HOST:PORT   loopback target (127.0.0.0/8 or [::1]) (required)
  -c, --concurrency N      concurrent connections / sessions (default 8)
  -n, --connections N      total connection cap in HTTP mode (default 10000)
  -d, --duration SECS      duration cap, no new work after it (default 10)
      --src RANGE          source IPv4s: A.B.C.D-A.B.C.E, comma list, or one IP
                           (default 127.0.0.2-127.0.0.250)
      --xff                send X-Forwarded-For: <client ip> (client ips from 198.18.0.0/15)
      --proxy-v1           send `PROXY TCP4 <client ip> <dst> <sport> <dport>` first
      --sid-fraction F     add ?sid=<random 20 chars> to this fraction of requests (0..1)
      --socketio N         run N engine.io v4 polling sessions instead of plain requests
      --sio-rotate-src     every request of a session from the next source ip (tests sid routing)
      --path P             request path for HTTP mode (default /)
      --timeout-ms MS      per-connection timeout (default 5000)
      --clients N          distinct client ips for --xff/--proxy-v1 (default 4096)
      --seed N             rng seed (default 1)
";

#[derive(Clone)]
struct Cfg {
    target: SocketAddr,
    concurrency: usize,
    max_conns: u64,
    duration: Duration,
    src: Vec<IpAddr>,
    xff: bool,
    proxy_v1: bool,
    sid_fraction: f64,
    socketio: Option<u64>,
    sio_rotate_src: bool,
    path: String,
    timeout: Duration,
    clients: u64,
    seed: u64,
}

fn die(msg: &str) -> ! {
    eprintln!("loadgen: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn is_loopback(ip: &IpAddr) -> bool {
    ip.is_loopback()
}

fn parse_src(s: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().unwrap_or_else(|_| die("bad --src range start"));
            let b: Ipv4Addr = b.trim().parse().unwrap_or_else(|_| die("bad --src range end"));
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1 << 16 {
                die("bad --src range");
            }
            for x in a..=b {
                out.push(IpAddr::V4(Ipv4Addr::from(x)));
            }
        } else {
            out.push(part.parse().unwrap_or_else(|_| die("bad --src address")));
        }
    }
    if out.is_empty() {
        die("empty --src");
    }
    if let Some(bad) = out.iter().find(|ip| !is_loopback(ip)) {
        die(&format!("source address {bad} is not loopback; refusing"));
    }
    out
}

fn parse_args() -> Cfg {
    let mut cfg = Cfg {
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        concurrency: 8,
        max_conns: 10_000,
        duration: Duration::from_secs(10),
        src: Vec::new(),
        xff: false,
        proxy_v1: false,
        sid_fraction: 0.0,
        socketio: None,
        sio_rotate_src: false,
        path: "/".into(),
        timeout: Duration::from_millis(5000),
        clients: 4096,
        seed: 1,
    };
    let mut target: Option<String> = None;
    let mut src = String::from("127.0.0.2-127.0.0.250");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let val = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_else(|| die(&format!("missing value for {}", args[*i - 1])))
    };
    while i < args.len() {
        let a = args[i].clone();
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-t" | "--target" => target = Some(val(&mut i)),
            "-c" | "--concurrency" => cfg.concurrency = val(&mut i).parse().unwrap_or_else(|_| die("bad -c")),
            "-n" | "--connections" => cfg.max_conns = val(&mut i).parse().unwrap_or_else(|_| die("bad -n")),
            "-d" | "--duration" => {
                let s: f64 = val(&mut i).parse().unwrap_or_else(|_| die("bad -d"));
                if !(s > 0.0 && s <= 3600.0) {
                    die("duration must be in (0, 3600]");
                }
                cfg.duration = Duration::from_secs_f64(s);
            }
            "--src" => src = val(&mut i),
            "--xff" => cfg.xff = true,
            "--proxy-v1" => cfg.proxy_v1 = true,
            "--sid-fraction" => {
                cfg.sid_fraction = val(&mut i).parse().unwrap_or_else(|_| die("bad --sid-fraction"));
                if !(0.0..=1.0).contains(&cfg.sid_fraction) {
                    die("--sid-fraction must be in [0,1]");
                }
            }
            "--sio-rotate-src" => cfg.sio_rotate_src = true,
            "--socketio" => cfg.socketio = Some(val(&mut i).parse().unwrap_or_else(|_| die("bad --socketio"))),
            "--path" => cfg.path = val(&mut i),
            "--timeout-ms" => cfg.timeout = Duration::from_millis(val(&mut i).parse().unwrap_or_else(|_| die("bad --timeout-ms"))),
            "--clients" => cfg.clients = val(&mut i).parse::<u64>().unwrap_or_else(|_| die("bad --clients")).clamp(1, 1 << 17),
            "--seed" => cfg.seed = val(&mut i).parse().unwrap_or_else(|_| die("bad --seed")),
            other if !other.starts_with('-') && target.is_none() => target = Some(other.to_string()),
            other => die(&format!("unknown argument {other}")),
        }
        i += 1;
    }
    let target = target.unwrap_or_else(|| die("--target is required"));
    let addr = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.find(|a| a.is_ipv4()).or_else(|| target.to_socket_addrs().ok()?.next()))
        .unwrap_or_else(|| die("cannot resolve --target"));
    if !is_loopback(&addr.ip()) {
        die(&format!("target {addr} is not loopback; refusing"));
    }
    if addr.port() == 0 {
        die("target port must not be 0");
    }
    cfg.target = addr;
    cfg.src = parse_src(&src);
    if cfg.target.is_ipv6() {
        // A v4 source cannot reach a v6 target: fall back to ::1.
        cfg.src = vec![IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)];
    }
    if cfg.concurrency == 0 || cfg.concurrency > 4096 {
        die("concurrency must be 1..=4096");
    }
    if cfg.max_conns > 50_000_000 {
        die("connection cap too large");
    }
    cfg
}

/// xorshift64* — tiny deterministic RNG (no dependency needed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn token(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..n).map(|_| A[(self.next() % 64) as usize] as char).collect()
    }
}

/// Client address used in X-Forwarded-For / PROXY lines (RFC 2544 range; only a string).
fn client_ip(cfg: &Cfg, k: u64) -> String {
    let c = (k.wrapping_mul(2_654_435_761) >> 7) % cfg.clients;
    format!("198.{}.{}.{}", 18 + ((c >> 16) & 1), (c >> 8) & 255, c & 255)
}

#[derive(Default)]
struct Stats {
    completed: u64,
    requests: u64,
    errors: BTreeMap<String, u64>,
    lat_us: Vec<u64>,
    last_done: Option<Instant>,
}

impl Stats {
    fn err(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }
}

struct Resp {
    status: u16,
    body: Vec<u8>,
}

fn io_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => "addrnotavail".into(),
        Some(libc::ECONNREFUSED) => "refused".into(),
        Some(libc::ECONNRESET) => "reset".into(),
        Some(libc::EPIPE) => "epipe".into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too_many_files".into(),
        _ => format!("{:?}", e.kind()).to_lowercase(),
    }
}

async fn connect(cfg: &Cfg, src: IpAddr) -> Result<TcpStream, String> {
    let sock = match src {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket:{}", io_kind(&e)))?;
    if src.is_ipv4() {
        // Let connect() pick the ephemeral port per 4-tuple (many more ports per source ip).
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    sock.bind(SocketAddr::new(src, 0)).map_err(|e| format!("bind:{}", io_kind(&e)))?;
    let s = sock.connect(cfg.target).await.map_err(|e| format!("connect:{}", io_kind(&e)))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses status + (if complete) body. Returns None while more bytes are needed.
fn parse_response(buf: &[u8], eof: bool) -> Option<Result<Resp, String>> {
    let hend = match find(buf, b"\r\n\r\n") {
        Some(h) => h,
        None => return if eof { Some(Err(if buf.is_empty() { "empty".into() } else { "truncated".into() })) } else { None },
    };
    let head = String::from_utf8_lossy(&buf[..hend]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = match status_line.split(' ').nth(1).and_then(|s| s.parse().ok()) {
        Some(s) if status_line.starts_with("HTTP/1.") => s,
        _ => return Some(Err("bad_status_line".into())),
    };
    let mut clen: Option<usize> = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                clen = v.trim().parse().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let body = &buf[hend + 4..];
    match clen {
        Some(n) if body.len() >= n => Some(Ok(Resp { status, body: body[..n].to_vec() })),
        Some(_) => if eof { Some(Err("truncated".into())) } else { None },
        None if eof => {
            let body = if chunked { dechunk(body) } else { body.to_vec() };
            Some(Ok(Resp { status, body }))
        }
        None => None,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(le) = find(b, b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..le]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < le + 2 + n {
            break;
        }
        out.extend_from_slice(&b[le + 2..le + 2 + n]);
        b = &b[(le + 4 + n).min(b.len())..];
    }
    out
}

/// One request on one fresh connection. Returns the response and the latency
/// (connect start -> full response). Waits (briefly) for the server's FIN so the
/// server, not the client, ends up holding TIME_WAIT.
async fn one_request(cfg: &Cfg, src: IpAddr, req: &[u8], no_close: &Cell<u64>) -> Result<(Resp, Duration), String> {
    let t0 = Instant::now();
    let mut s = connect(cfg, src).await?;
    s.write_all(req).await.map_err(|e| format!("write:{}", io_kind(&e)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 8192];
    let resp = loop {
        let n = s.read(&mut tmp).await.map_err(|e| format!("read:{}", io_kind(&e)))?;
        if n > 0 && buf.len() < 1 << 20 {
            buf.extend_from_slice(&tmp[..n]);
        }
        if let Some(r) = parse_response(&buf, n == 0) {
            break r?;
        }
        if n == 0 {
            return Err("eof".into());
        }
    };
    let lat = t0.elapsed();
    // Drain until the server closes (Connection: close), bounded.
    match tokio::time::timeout(Duration::from_millis(1000), async {
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    {
        Ok(()) => {}
        Err(_) => no_close.set(no_close.get() + 1),
    }
    Ok((resp, lat))
}

struct Shared {
    cfg: Cfg,
    start: Instant,
    deadline: Instant,
    next: Cell<u64>,
    stats: RefCell<Stats>,
    no_close: Cell<u64>,
}

impl Shared {
    /// Claims the next unit of work (connection or session) if within both caps.
    fn claim(&self, cap: u64) -> Option<u64> {
        let i = self.next.get();
        if i >= cap || Instant::now() >= self.deadline {
            return None;
        }
        self.next.set(i + 1);
        Some(i)
    }
}

fn build_request(cfg: &Cfg, method: &str, path: &str, client: Option<&str>, sport: u16, body: Option<&[u8]>) -> Vec<u8> {
    let mut r = Vec::with_capacity(256);
    if cfg.proxy_v1 {
        let c = client.unwrap_or("198.18.0.1");
        r.extend_from_slice(
            format!("PROXY TCP4 {c} {} {sport} {}\r\n", cfg.target.ip(), cfg.target.port()).as_bytes(),
        );
    }
    r.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", cfg.target).as_bytes());
    if cfg.xff {
        if let Some(c) = client {
            r.extend_from_slice(format!("X-Forwarded-For: {c}\r\n").as_bytes());
        }
    }
    if let Some(b) = body {
        r.extend_from_slice(format!("Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n", b.len()).as_bytes());
    }
    r.extend_from_slice(b"Connection: close\r\n\r\n");
    if let Some(b) = body {
        r.extend_from_slice(b);
    }
    r
}

async fn http_worker(sh: Rc<Shared>, wid: u64) {
    let cfg = &sh.cfg;
    let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (wid + 1).wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
    while let Some(i) = sh.claim(cfg.max_conns) {
        let src = cfg.src[(i % cfg.src.len() as u64) as usize];
        let client = client_ip(cfg, i);
        let path = if cfg.sid_fraction > 0.0 && rng.unit() < cfg.sid_fraction {
            let sep = if cfg.path.contains('?') { '&' } else { '?' };
            format!("{}{sep}sid={}", cfg.path, rng.token(20))
        } else {
            cfg.path.clone()
        };
        let sport = 1024 + (rng.next() % 64000) as u16;
        let req = build_request(cfg, "GET", &path, Some(&client), sport, None);
        let res = tokio::time::timeout(cfg.timeout, one_request(cfg, src, &req, &sh.no_close)).await;
        let mut st = sh.stats.borrow_mut();
        st.requests += 1;
        match res {
            Err(_) => st.err("timeout"),
            Ok(Err(e)) => st.err(e),
            Ok(Ok((resp, lat))) => {
                if resp.status == 200 {
                    st.completed += 1;
                    st.lat_us.push(lat.as_micros() as u64);
                    st.last_done = Some(Instant::now());
                } else {
                    st.err(format!("status_{}", resp.status));
                }
            }
        }
    }
}

/// engine.io v4 payload: packets separated by 0x1e.
fn packets(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == 0x1e).map(|p| String::from_utf8_lossy(p).into_owned()).collect()
}

async fn sio_session(sh: &Shared, i: u64, reqs: &Cell<u64>) -> Result<(), String> {
    let cfg = &sh.cfg;
    let nsrc = cfg.src.len() as u64;
    let reqno = Cell::new(0u64);
    let client = client_ip(cfg, i);
    let sport = 1024 + ((i * 7919) % 64000) as u16;
    let base = "/socket.io/?EIO=4&transport=polling";
    let call = |method: &'static str, path: String, body: Option<&'static [u8]>| {
        reqs.set(reqs.get() + 1);
        // Same source ip for the whole session, unless --sio-rotate-src (then each
        // request comes from the next address: only sid-based routing keeps it sticky).
        let k = if cfg.sio_rotate_src { i.wrapping_mul(7) + reqno.get() } else { i };
        reqno.set(reqno.get() + 1);
        let src = cfg.src[(k % nsrc) as usize];
        let req = build_request(cfg, method, &path, Some(&client), sport, body);
        async move {
            match tokio::time::timeout(cfg.timeout, one_request(cfg, src, &req, &sh.no_close)).await {
                Err(_) => Err("timeout".to_string()),
                Ok(r) => r.map(|(resp, _)| resp),
            }
        }
    };
    let step = |name: &str, e: String| format!("sio_{name}:{e}");
    let expect_ok = |name: &str, r: Resp| -> Result<Resp, String> {
        if r.status == 200 {
            Ok(r)
        } else {
            Err(format!("sio_{name}:status_{}", r.status))
        }
    };

    // 1. handshake
    let r = call("GET", format!("{base}&t=h{i}"), None).await.map_err(|e| step("handshake", e))?;
    let r = expect_ok("handshake", r)?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let sid = text
        .strip_prefix('0')
        .and_then(|j| j.split("\"sid\":\"").nth(1))
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
        .ok_or_else(|| "sio_handshake:no_sid".to_string())?;
    let with_sid = format!("{base}&sid={sid}");

    // 2. connect to the main namespace
    let r = call("POST", with_sid.clone(), Some(b"40")).await.map_err(|e| step("connect_post", e))?;
    expect_ok("connect_post", r)?;
    // 3. read CONNECT ack `40{...}`
    let mut connected = false;
    for _ in 0..4 {
        let r = call("GET", with_sid.clone(), None).await.map_err(|e| step("connect_poll", e))?;
        let r = expect_ok("connect_poll", r)?;
        if packets(&r.body).iter().any(|p| p.starts_with("40")) {
            connected = true;
            break;
        }
    }
    if !connected {
        return Err("sio_connect_poll:no_40".into());
    }
    // 4. emit "ping" with ack id 1
    let r = call("POST", with_sid.clone(), Some(b"421[\"ping\"]")).await.map_err(|e| step("emit", e))?;
    expect_ok("emit", r)?;
    // 5. poll for the ack `431[...]`
    let mut acked = false;
    for _ in 0..4 {
        let r = call("GET", with_sid.clone(), None).await.map_err(|e| step("ack_poll", e))?;
        let r = expect_ok("ack_poll", r)?;
        if packets(&r.body).iter().any(|p| p.starts_with("431")) {
            acked = true;
            break;
        }
    }
    if !acked {
        return Err("sio_ack_poll:no_431".into());
    }
    // 6. close the engine.io session so servers do not accumulate idle sessions.
    //    Not part of the success criterion.
    let _ = call("POST", with_sid, Some(b"1")).await;
    Ok(())
}

async fn sio_worker(sh: Rc<Shared>, cap: u64) {
    while let Some(i) = sh.claim(cap) {
        let reqs = Cell::new(0u64);
        let t0 = Instant::now();
        // Whole-session bound: 8 requests max, each bounded by the per-connection timeout.
        let res = sio_session(&sh, i, &reqs).await;
        let mut st = sh.stats.borrow_mut();
        st.requests += reqs.get();
        match res {
            Ok(()) => {
                st.completed += 1;
                st.lat_us.push(t0.elapsed().as_micros() as u64);
                st.last_done = Some(Instant::now());
            }
            Err(e) => st.err(e),
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn main() {
    let cfg = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let sh = Rc::new(Shared {
        deadline: start + cfg.duration,
        start,
        next: Cell::new(0),
        stats: RefCell::new(Stats::default()),
        no_close: Cell::new(0),
        cfg: cfg.clone(),
    });
    // Hard wall-clock bound: duration + one request timeout (x8 for sessions) + slack.
    let per_unit = cfg.timeout * if cfg.socketio.is_some() { 9 } else { 1 };
    let hard = cfg.duration + per_unit + Duration::from_secs(2);
    let timed_out = local.block_on(&rt, async {
        let mut handles = Vec::new();
        for w in 0..cfg.concurrency as u64 {
            let sh = sh.clone();
            handles.push(match cfg.socketio {
                Some(n) => tokio::task::spawn_local(sio_worker(sh, n)),
                None => tokio::task::spawn_local(http_worker(sh, w)),
            });
        }
        tokio::time::timeout(hard, async {
            for h in handles {
                let _ = h.await;
            }
        })
        .await
        .is_err()
    });
    let mut st = sh.stats.borrow_mut();
    if timed_out {
        st.err("hard_deadline");
    }
    let end = st.last_done.unwrap_or_else(Instant::now);
    let elapsed = end.duration_since(sh.start).as_secs_f64().max(1e-9);
    let total_elapsed = sh.start.elapsed().as_secs_f64();
    st.lat_us.sort_unstable();
    let errors_total: u64 = st.errors.values().sum();
    let errs = st
        .errors
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), v))
        .collect::<Vec<_>>()
        .join(",");
    let rate = st.completed as f64 / elapsed;
    let mode = if cfg.socketio.is_some() { "socketio" } else { "http" };
    println!(
        "{{\"mode\":\"{mode}\",\"completed\":{},\"requests\":{},\"errors_total\":{},\"errors\":{{{errs}}},\"elapsed_s\":{:.4},\"wall_s\":{:.4},\"conn_per_s\":{:.1},\"sessions_per_s\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"no_close\":{},\"concurrency\":{},\"sources\":{}}}",
        st.completed,
        st.requests,
        errors_total,
        elapsed,
        total_elapsed,
        if cfg.socketio.is_some() { st.requests as f64 / elapsed } else { rate },
        if cfg.socketio.is_some() { format!("{rate:.1}") } else { "null".into() },
        pct(&st.lat_us, 0.50),
        pct(&st.lat_us, 0.99),
        pct(&st.lat_us, 1.0),
        sh.no_close.get(),
        cfg.concurrency,
        cfg.src.len(),
    );
}
