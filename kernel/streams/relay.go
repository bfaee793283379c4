package streams

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
)

// Relay passes what down (the stream a server serves) receives on to up
// (the stream it opened to the next server), and what up receives back to
// down, until up ends. It returns nil when up ended cleanly, else the error
// that ended it or that sending to down gave.
//
// When down ends cleanly, Relay closes up's sending side; when down fails,
// it calls cancel, which must end up (cancel the ctx up was opened with).
// The goroutine that reads down ends with down, that is once the handler
// that called Relay returns.
func Relay[Req, Resp any](down grpc.BidiStreamingServer[Req, Resp], up grpc.BidiStreamingClient[Req, Resp], cancel context.CancelFunc) error {
	go func() {
		for {
			m, err := down.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					_ = up.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if up.Send(m) != nil {
				return
			}
		}
	}()
	for {
		m, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := down.Send(m); err != nil {
			return err
		}
	}
}
