//! Answering from the address a datagram was sent to. A socket bound to every address (`0.0.0.0`
//! or `::`) would otherwise answer from whichever address the kernel's route prefers: a peer that
//! wrote to 127.0.0.2, or to a second address of the host, hears replies from another address
//! and its socket (`nc -u`, a connected UDP socket) drops them. So on such a socket the kernel is
//! asked for each datagram's destination (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) and every reply
//! names it as its source in the same control message.
//!
//! A socket bound to one address needs none of this: its replies can only leave from there.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Asks the kernel for every datagram's destination address, if `socket` is bound to every
/// address; returns whether it did (and so whether [`recv`] will report one).
pub(crate) fn enable(socket: &UdpSocket) -> io::Result<bool> {
    let local = socket.local_addr()?;
    if !local.ip().is_unspecified() || !cfg!(target_os = "linux") {
        return Ok(false);
    }
    set_options(socket, local.is_ipv6())?;
    Ok(true)
}

/// Receives one datagram: its length, its source, and (where [`enable`] turned it on) the local
/// address it was sent to.
pub(crate) async fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    with_destination: bool,
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    if !with_destination {
        let (len, from) = socket.recv_from(buf).await?;
        return Ok((len, from, None));
    }
    socket
        .async_io(Interest::READABLE, || recv_with_destination(socket, buf))
        .await
}

/// Sends one datagram to `to` without waiting, from the local address `from` when given.
pub(crate) fn try_send(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<usize> {
    match from {
        None => socket.try_send_to(payload, to),
        Some(from) => socket.try_io(Interest::WRITABLE, || send_from(socket, payload, to, from)),
    }
}

/// Sends one datagram like [`try_send`], waiting for room in the socket's buffer.
pub(crate) async fn send(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    from: Option<IpAddr>,
) -> io::Result<usize> {
    loop {
        socket.writable().await?;
        match try_send(socket, payload, to, from) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            sent => return sent,
        }
    }
}

/// Room for one control message carrying either kind of packet information (aligned for
/// `cmsghdr`).
pub(crate) type ControlBuffer = [u64; 8];

/// Fills `control` with the control message that makes a datagram leave from `from`; returns its
/// length in bytes, for `msg_controllen`.
#[cfg(target_os = "linux")]
pub(crate) fn source_control(from: IpAddr, control: &mut ControlBuffer) -> usize {
    *control = [0; 8];
    // SAFETY: the header is built in a zeroed, cmsghdr-aligned buffer of 64 bytes, more than a
    // cmsghdr (16) plus either payload (at most 20, padded to 24) takes; CMSG_* only compute
    // offsets within it.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of::<ControlBuffer>() as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        match from.to_canonical() {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(&info) as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(std::mem::size_of_val(&info) as u32) as usize
            }
            IpAddr::V6(v6) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(&info) as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(std::mem::size_of_val(&info) as u32) as usize
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn set_options(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: an int option, passed by pointer with its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    if v6 {
        set(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
        // IPv4 datagrams on a dual-stack socket: their destination comes as IP_PKTINFO. A
        // v6-only socket refuses nothing here, it just never gets one.
        let _ = set(libc::IPPROTO_IP, libc::IP_PKTINFO);
        Ok(())
    } else {
        set(libc::IPPROTO_IP, libc::IP_PKTINFO)
    }
}

#[cfg(not(target_os = "linux"))]
fn set_options(_socket: &UdpSocket, _v6: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(target_os = "linux")]
fn recv_with_destination(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    use std::os::fd::AsRawFd;
    let mut control: [u64; 16] = [0; 16];
    let mut destination = None;
    // SAFETY: recvmsg writes at most msg_namelen bytes of address into the storage socket2 hands
    // us, at most buf.len() bytes into buf and at most msg_controllen into `control`; the control
    // messages are then walked with the CMSG_* macros over that same buffer.
    let (len, from) = unsafe {
        socket2::SockAddr::try_init(|storage, storage_len| {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *storage_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *storage_len = msg.msg_namelen;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                        let octets = info.ipi_spec_dst.s_addr.to_ne_bytes();
                        destination = Some(IpAddr::V4(Ipv4Addr::from(octets)));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                        let addr = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                        // An IPv4 datagram on a dual-stack socket may say so with both.
                        destination.get_or_insert(IpAddr::V6(addr).to_canonical());
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            Ok(n as usize)
        })?
    };
    let from = from.as_socket().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
    })?;
    Ok((len, from, destination))
}

#[cfg(not(target_os = "linux"))]
fn recv_with_destination(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let (len, from) = socket.try_recv_from(buf)?;
    Ok((len, from, None))
}

#[cfg(target_os = "linux")]
fn send_from(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    from: IpAddr,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let to = socket2::SockAddr::from(to);
    let mut control: ControlBuffer = [0; 8];
    let control_len = source_control(from, &mut control);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: the header points at the address, one iovec over `payload` and the control
    // message, all alive until sendmsg returns; the kernel only reads them.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control_len as _;
        libc::sendmsg(socket.as_raw_fd(), &msg, 0)
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_from(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddr,
    _from: IpAddr,
) -> io::Result<usize> {
    socket.try_send_to(payload, to)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A wildcard socket answers from each address it was written to: 127.0.0.1 and 127.0.0.2
    /// (both on loopback), and on a dual-stack `::` socket ::1 and 127.0.0.1.
    #[tokio::test]
    async fn replies_leave_from_the_address_each_datagram_was_sent_to() {
        for (bind, targets) in [
            ("0.0.0.0:0", vec!["127.0.0.1", "127.0.0.2"]),
            ("[::]:0", vec!["::1", "127.0.0.1"]),
        ] {
            let server = UdpSocket::bind(bind)
                .await
                .unwrap_or_else(|e| panic!("bind {bind} (IPv6 on loopback is needed): {e}"));
            assert!(enable(&server).expect("enable"), "{bind}");
            let port = server.local_addr().expect("local").port();
            for target in targets {
                let ip: IpAddr = target.parse().expect("ip");
                let client_bind = if ip.is_ipv6() {
                    "[::1]:0"
                } else {
                    "127.0.0.1:0"
                };
                let client = UdpSocket::bind(client_bind).await.expect("client");
                // Connected: a reply from any other address is dropped by the kernel.
                client.connect((ip, port)).await.expect("connect");
                client.send(b"hello").await.expect("send");
                let mut buf = [0u8; 64];
                let (len, from, to) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    recv(&server, &mut buf, true),
                )
                .await
                .expect("datagram in time")
                .expect("recv");
                assert_eq!(&buf[..len], b"hello");
                assert_eq!(to, Some(ip), "destination of a datagram to {target}");
                send(&server, b"hi back", from, to).await.expect("send");
                let len =
                    tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
                        .await
                        .unwrap_or_else(|_| panic!("the reply to {target} comes from {target}"))
                        .expect("recv");
                assert_eq!(&buf[..len], b"hi back");
            }
        }
    }
}
