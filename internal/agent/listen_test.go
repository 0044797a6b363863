package agent_test

import "net"

type netListenConfig struct{}

func (netListenConfig) listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
