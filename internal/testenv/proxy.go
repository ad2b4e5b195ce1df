package testenv

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards TCP connections to a target until it is cut: then live
// connections are dropped and new ones are closed as soon as their first
// line (an HTTP request's) has arrived, as when a network path or an
// endpoint goes away; Refused lists those lines, so a test can wait for the
// request that shows a client gave up (an abort, say). Held, it keeps new
// connections open and forwards nothing, as an endpoint that accepts and
// never answers: a request through it hangs. Restore brings it back. A
// shaped proxy (NewShapedProxy) also makes each connection behave like one
// connection to S3 across a network: a bandwidth cap and a first-byte latency.
type Proxy struct {
	ln     net.Listener
	target string
	shape  Shape

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
	hold  chan struct{} // non-nil while held; closed by Restore
	held  int           // connections held so far
	// refused are the first lines of the connections refused while cut.
	refused []string
}

// Shape is how each connection through a Proxy behaves. The zero value
// forwards as fast as loopback allows.
type Shape struct {
	// BytesPerSecond caps each connection, in each direction on its own
	// (0: no cap). Connections do not share it: as with S3, where one
	// connection gives tens of MB/s, n connections give n times as much.
	BytesPerSecond int64
	// FirstByte delays each response: the server's first bytes after a
	// client write are forwarded no sooner than FirstByte after that write.
	// On a keep-alive connection that is once per request.
	FirstByte time.Duration
}

// NewProxy listens on a loopback port and forwards to target (host:port or an http URL).
func NewProxy(target string) (*Proxy, error) { return NewShapedProxy(target, Shape{}) }

// NewShapedProxy is NewProxy with each connection shaped.
func NewShapedProxy(target string, shape Shape) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: strings.TrimPrefix(target, "http://"), shape: shape, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

// URL is the proxy's address as an http URL.
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Cut drops every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Hold keeps each new connection open, forwarding nothing, until Restore
// (live connections go on as before).
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
	}
}

// Held is how many connections Hold has held so far.
func (p *Proxy) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// Refused are the first lines (for HTTP, the request lines: "PUT /b/k?partNumber=2&uploadId=u HTTP/1.1")
// of the connections refused while cut, oldest first.
func (p *Proxy) Refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

// Restore forwards again, held connections included.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// refuse closes a connection that arrived while cut, once its first line
// has come (or a second has passed), and records that line.
func (p *Proxy) refuse(client net.Conn) {
	defer client.Close()
	_ = client.SetReadDeadline(time.Now().Add(time.Second))
	line, _ := bufio.NewReader(client).ReadString('\n')
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused = append(p.refused, strings.TrimSpace(line))
}

func (p *Proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(client)
	}
}

func (p *Proxy) forward(client net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		p.refuse(client)
		return
	}
	p.conns[client] = true
	hold := p.hold
	if hold != nil {
		p.held++
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		p.mu.Unlock()
		client.Close()
	}()
	if hold != nil {
		<-hold
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down { // closed while held
			return
		}
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	p.mu.Lock()
	p.conns[server] = true
	p.mu.Unlock()
	// asked is when the client last wrote (Unix ns), 0 once the response
	// to it has begun: the start of the first-byte delay.
	var asked atomic.Int64
	done := make(chan struct{}, 2)
	go func() {
		p.pipe(server, client, func() { asked.Store(time.Now().UnixNano()) })
		done <- struct{}{}
	}()
	go func() {
		p.pipe(client, server, func() {
			if t := asked.Swap(0); t != 0 && p.shape.FirstByte > 0 {
				time.Sleep(time.Until(time.Unix(0, t).Add(p.shape.FirstByte)))
			}
		})
		done <- struct{}{}
	}()
	<-done
	p.mu.Lock()
	delete(p.conns, server)
	p.mu.Unlock()
}

// pipeBuf is how much one read forwards: small enough that pacing is smooth
// (about 1 ms at 32 MB/s), large enough to be cheap at loopback speed.
const pipeBuf = 32 << 10

// paceSlack is how far a connection may fall behind its schedule and catch
// up at full speed: enough to absorb sleep overshoot, too little to bank an
// idle connection's unused bandwidth for a burst.
const paceSlack = 2 * time.Millisecond

// pipe copies src to dst until either fails, calling arrived before
// forwarding each read, and holding to the bandwidth cap.
func (p *Proxy) pipe(dst, src net.Conn, arrived func()) {
	buf := make([]byte, pipeBuf)
	var next time.Time // when the next byte may go, at the capped rate
	for {
		n, err := src.Read(buf)
		if n > 0 {
			arrived()
			if rate := p.shape.BytesPerSecond; rate > 0 {
				now := time.Now()
				if next.Before(now.Add(-paceSlack)) {
					next = now.Add(-paceSlack) // idle time is not credit
				}
				time.Sleep(time.Until(next))
				next = next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
