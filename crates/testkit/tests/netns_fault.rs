//! The fixtures of fluke's fault and TLS tests clean up after themselves: a `FaultProxy`
//! dropped with a client connection still open closes it and its listener; a
//! `NetnsRegistry` dropped while a test panics leaves no namespace, veth or process behind.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testkit::{Fault, FaultProxy, NetnsRegistry, Registry, Rule};

fn status_line(stream: &TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

#[test]
fn fault_proxy_forwards_injects_and_stops_on_drop() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg);
    proxy.add(Rule::new("GET", "/v2/", Fault::Status(503)).times(1));
    let addr = proxy.addr();
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let get = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    conn.write_all(get.as_bytes()).unwrap();
    assert_eq!(status_line(&conn), "HTTP/1.1 503 Service Unavailable");

    // A second connection is forwarded to the registry.
    let mut other = TcpStream::connect(&addr).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    other.write_all(get.as_bytes()).unwrap();
    assert_eq!(status_line(&other), "HTTP/1.1 200 OK");
    assert_eq!(proxy.count("GET", "/v2/"), 2);

    // Dropped with both connections open: it returns promptly, they are closed, and
    // nothing listens on the port any more.
    let start = Instant::now();
    drop(proxy);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let mut rest = String::new();
    use std::io::Read;
    let _ = other.read_to_string(&mut rest);
    assert!(TcpStream::connect(&addr).is_err());
}

#[test]
fn netns_registry_cleans_up_when_the_test_panics() {
    let seen: Mutex<Option<(String, String, u32)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let reg = NetnsRegistry::start_tls();
        *seen.lock().unwrap() = Some((reg.namespace().to_string(), reg.addr(), reg.pid().unwrap()));
        panic!("a failing test");
    });
    assert!(result.is_err());
    let (ns, addr, pid) = seen.lock().unwrap().clone().unwrap();
    let ip = testkit::require_tool("ip");
    let namespaces = testkit::run(Command::new(&ip).args(["netns", "list"]));
    assert!(
        !namespaces
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
        "{ns} still there:\n{namespaces}"
    );
    let host_ip = addr.split(':').next().unwrap();
    let addrs = testkit::run(Command::new(&ip).args(["-o", "-4", "addr", "show"]));
    let [a, b, c, d]: [u8; 4] = host_ip.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let host_side = format!("{a}.{b}.{c}.{}/30", d - 1);
    assert!(!addrs.contains(&host_side), "veth still there:\n{addrs}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "registry {pid} still running"
    );
}
