package allreduce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

// pipeline runs an operation's exchange: a goroutine sends while this one
// receives, each waiting only for the messages its next one depends on, so
// sending, receiving and adding overlap segment by segment.
func (r *Ring) pipeline(ctx context.Context, cancel context.CancelCauseFunc, p exchange) error {
	recvTok := make(chan struct{}, p.recvs)
	sendTok := make(chan struct{}, p.sends)
	var sendErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		taken := 0 // received messages known complete
		for i := range p.sends {
			for d := p.sendDep(i); taken <= d; taken++ {
				select {
				case <-recvTok:
				case <-ctx.Done():
					sendErr = context.Cause(ctx)
					return
				}
			}
			h, elems := p.sendItem(i)
			if err := r.sendData(ctx, h, elems); err != nil {
				sendErr = err
				cancel(err)
				return
			}
			sendTok <- struct{}{}
		}
	}()
	recvErr := r.receive(ctx, p, recvTok, sendTok)
	if recvErr != nil {
		cancel(recvErr)
	}
	wg.Wait()
	if recvErr == nil && sendErr == nil {
		return nil
	}
	// Prefer the root cause to its echo: one side's failure may close the
	// transport under the other, which then sees ErrClosed.
	for _, err := range []error{context.Cause(ctx), recvErr, sendErr} {
		if err != nil && !errors.Is(err, ErrClosed) {
			return err
		}
	}
	return context.Cause(ctx)
}

// receive is pipeline's receiving side, run on its goroutine: it receives the
// exchange's messages in order into their elements, copying or adding, and
// hands a token to the sender for each one complete.
func (r *Ring) receive(ctx context.Context, p exchange, recvTok, sendTok chan struct{}) error {
	taken := 0 // sent messages known complete
	// waitSent waits until sent message d is out. A message that depends on
	// one of ours cannot arrive before ours has gone round the ring, so the
	// wait happens once its header is in (and is all but instant). Waiting
	// before receiving would leave the link unwatched while the sender is
	// blocked.
	waitSent := func(d int) error {
		for ; taken <= d; taken++ {
			select {
			case <-sendTok:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	}
	for j := range p.recvs {
		dep := p.recvDep(j)
		want, dst, mode := p.recvItem(j)
		var into []byte
		switch {
		case want.DType == BF16:
			into = unsafe.Slice((*byte)(unsafe.Pointer(&r.recvScratch[0])), want.Len)
		case mode == recvCopy:
			into = f32Bytes(dst) // an int64 payload too: dst is its float32 view
		default:
			into = f32Bytes(r.recvScratch[:len(dst)])
		}
		if err := r.recvFrame(ctx, want, into, func() error { return waitSent(dep) }); err != nil {
			return err
		}
		switch {
		case want.DType == BF16 && mode == recvCopy:
			decodeBF16(dst, bytesU16(into))
		case want.DType == BF16:
			addBF16To(dst, bytesU16(into))
			if mode == recvAddAndOwn {
				roundBF16(dst)
			}
		case want.DType == I64 && mode != recvCopy:
			if addInt64To(f32AsI64(dst), f32AsI64(r.recvScratch[:len(dst)])) {
				return fmt.Errorf("%w: operation %d step %d segment %d", ErrOverflow, want.Seq, want.Step, want.Segment)
			}
		case mode != recvCopy:
			addTo(dst, r.recvScratch[:len(dst)])
		}
		recvTok <- struct{}{}
	}
	return nil
}

// sendData sends one data frame of elems, encoded as h.DType.
func (r *Ring) sendData(ctx context.Context, h Header, elems []float32) error {
	payload := f32Bytes(elems)
	if h.DType == BF16 && len(elems) > 0 {
		encodeBF16(r.sendScratch, elems)
		payload = unsafe.Slice((*byte)(unsafe.Pointer(&r.sendScratch[0])), 2*len(elems))
	}
	select {
	case r.sendLock <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	err := r.t.Send(ctx, h, payload)
	if err == nil {
		r.sent++
	}
	r.lastSend.Store(int64(monotonic()))
	<-r.sendLock
	if err != nil {
		return fmt.Errorf("send to right neighbour %s: %w", r.peer(1), err)
	}
	return nil
}
