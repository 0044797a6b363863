package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// This file speaks just enough rtnetlink to bring a link up, add a VLAN,
// an address and a default route: the ramdisk has no ip binary.

var nlSeq atomic.Uint32

type nlAttr struct {
	typ  uint16
	data []byte
}

func attrBytes(as ...nlAttr) []byte {
	var b []byte
	for _, a := range as {
		l := 4 + len(a.data)
		h := make([]byte, 4)
		binary.NativeEndian.PutUint16(h, uint16(l))
		binary.NativeEndian.PutUint16(h[2:], a.typ)
		b = append(b, h...)
		b = append(b, a.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return b
}

func u32(v uint32) []byte { b := make([]byte, 4); binary.NativeEndian.PutUint32(b, v); return b }
func u16(v uint16) []byte { b := make([]byte, 2); binary.NativeEndian.PutUint16(b, v); return b }

// nlRequest sends one rtnetlink request and waits for its ack.
func nlRequest(typ, flags uint16, payload []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	seq := nlSeq.Add(1)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.NLMSG_HDRLEN+len(payload)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	msg = append(msg, payload...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink recv: %w", err)
		}
		b := buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b))
			t := binary.NativeEndian.Uint16(b[4:])
			s := binary.NativeEndian.Uint32(b[8:])
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return errors.New("netlink: bad message")
			}
			if s == seq && t == unix.NLMSG_ERROR {
				code := int32(binary.NativeEndian.Uint32(b[16:]))
				if code == 0 {
					return nil
				}
				return unix.Errno(-code)
			}
			b = b[(l+3)&^3:]
		}
	}
}

func ifinfo(index int32, flags, change uint32) []byte {
	b := make([]byte, 16) // struct ifinfomsg
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint32(b[8:], flags)
	binary.NativeEndian.PutUint32(b[12:], change)
	return b
}

// linkUp sets IFF_UP on the interface.
func linkUp(index int) error {
	if err := nlRequest(unix.RTM_NEWLINK, 0, ifinfo(int32(index), unix.IFF_UP, unix.IFF_UP)); err != nil {
		return fmt.Errorf("agent: link %d up: %w", index, err)
	}
	return nil
}

// addVLAN creates name as an 802.1Q VLAN id on parent.
func addVLAN(parent int, name string, id int) error {
	info := attrBytes(
		nlAttr{unix.IFLA_INFO_KIND, []byte("vlan")},
		nlAttr{unix.IFLA_INFO_DATA | unix.NLA_F_NESTED, attrBytes(nlAttr{unix.IFLA_VLAN_ID, u16(uint16(id))})},
	)
	p := append(ifinfo(0, 0, 0), attrBytes(
		nlAttr{unix.IFLA_LINK, u32(uint32(parent))},
		nlAttr{unix.IFLA_IFNAME, append([]byte(name), 0)},
		nlAttr{unix.IFLA_LINKINFO | unix.NLA_F_NESTED, info},
	)...)
	if err := nlRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, p); err != nil {
		return fmt.Errorf("agent: add vlan %s: %w", name, err)
	}
	return nil
}

func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addAddr adds addr to the interface.
func addAddr(index int, addr netip.Prefix) error {
	ip := addr.Addr().AsSlice()
	b := make([]byte, 8) // struct ifaddrmsg
	b[0] = family(addr.Addr())
	b[1] = byte(addr.Bits())
	b[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	p := append(b, attrBytes(nlAttr{unix.IFA_LOCAL, ip}, nlAttr{unix.IFA_ADDRESS, ip})...)
	if err := nlRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, p); err != nil {
		return fmt.Errorf("agent: add address %s: %w", addr, err)
	}
	return nil
}

// addDefaultRoute adds a default route through gw on the interface.
func addDefaultRoute(index int, gw netip.Addr) error {
	b := make([]byte, 12) // struct rtmsg
	b[0] = family(gw)
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	p := append(b, attrBytes(nlAttr{unix.RTA_GATEWAY, gw.AsSlice()}, nlAttr{unix.RTA_OIF, u32(uint32(index))})...)
	if err := nlRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, p); err != nil {
		return fmt.Errorf("agent: add default route via %s: %w", gw, err)
	}
	return nil
}
