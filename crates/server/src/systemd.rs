//! systemd readiness notification (`Type=notify`): one datagram to `$NOTIFY_SOCKET`, the
//! protocol of `sd_notify(3)`, without linking libsystemd. A no-op outside systemd.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, `RELOADING=1`, `STOPPING=1`) to systemd when the service
/// runs under it; errors are logged, never fatal.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path, state) {
        tracing::warn!(error = %e, "could not notify systemd ({state})");
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (Linux): the name after '@'.
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// `RELOADING=1` as systemd 253+ expects it: with the monotonic time in microseconds.
pub fn reloading_message() -> String {
    let (sec, nsec) = monotonic_now();
    let usec = sec * 1_000_000 + nsec / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// `CLOCK_MONOTONIC` as (seconds, nanoseconds): systemd compares it with its own clock, and
/// std's `Instant` does not expose its absolute value.
fn monotonic_now() -> (u64, u64) {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clk: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_MONOTONIC: i32 = 1;
    let mut t = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable `struct timespec` (two 64-bit fields on the 64-bit Linux
    // targets this server builds for) and CLOCK_MONOTONIC is always available on Linux.
    let rc = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut t) };
    if rc != 0 {
        return (0, 0);
    }
    (t.tv_sec as u64, t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_ready_to_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let msg = reloading_message();
        assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="));
        let usec: u64 = msg.rsplit('=').next().unwrap().parse().unwrap();
        assert!(usec > 0);
    }
}
