package adapterkit

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/transport"
)

// Feeds is the life of one subscriber's feeding goroutines (its pumps):
// [Feeds.Start] starts them unless the subscriber is closed, and
// [Feeds.Close] marks it closed, closes [Feeds.Closing] and waits for every
// goroutine started by Start or [Feeds.Go]. The zero value is open.
type Feeds struct {
	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
}

// Closing returns a channel closed once Close is called.
func (f *Feeds) Closing() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closingLocked()
}

func (f *Feeds) closingLocked() chan struct{} {
	if f.closing == nil {
		f.closing = make(chan struct{})
	}
	return f.closing
}

// Closed reports whether Close was called.
func (f *Feeds) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Start runs each of fns in a goroutine of its own, all of them or, once
// Close was called, none: then it returns [transport.ErrClosed].
func (f *Feeds) Start(fns ...func()) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return transport.ErrClosed
	}
	for _, fn := range fns {
		f.wg.Go(fn)
	}
	return nil
}

// Go runs fn in a goroutine that Close waits for. It is for the helpers of
// a goroutine that Start runs (which Close is still waiting for), such as a
// [Window]'s watchers.
func (f *Feeds) Go(fn func()) { f.wg.Go(fn) }

// Close marks the subscriber closed, closes Closing (once) and waits for
// the goroutines. It may be called more than once, and concurrently.
func (f *Feeds) Close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.closingLocked())
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// Remove deletes s from set, a transport's live subscribers guarded by mu:
// the last step of a subscriber's Close (see [CloseAll]).
func Remove[S comparable](mu *sync.Mutex, set map[S]struct{}, s S) {
	mu.Lock()
	defer mu.Unlock()
	delete(set, s)
}

// Settlement is a handed-out message's outcome, as its watcher saw it.
type Settlement struct {
	Msg   *message.Message
	Acked bool
}

// Window is what a pump holds of the messages it handed out with a window
// of more than one ([transport.WindowSubscriber]): each one's handle H (what
// the pump acks on the broker) and the outcomes their watchers report. The
// zero value is a window of one: Held and Settled are nil (a receive from
// Settled never happens) and only the pump's single message is out. One
// goroutine (the pump) uses Held, Open, Free, Settle and Stop; watchers run
// [Window.Watch].
type Window[H any] struct {
	Held    map[*message.Message]H // handed out, not yet settled (nil: window of one)
	Settled chan Settlement        // outcomes reported by Watch
	limit   int
	done    chan struct{}
}

// Open makes w a window of n > 1 messages. With n <= 1 it does nothing.
func (w *Window[H]) Open(n int) {
	if n <= 1 {
		return
	}
	w.limit = n
	w.Held = make(map[*message.Message]H, n)
	w.Settled = make(chan Settlement, n)
	w.done = make(chan struct{})
}

// Free reports whether another message may be handed out: with a window of
// n, fewer than n are held; with a window of one, idle (the pump has none
// out).
func (w *Window[H]) Free(idle bool) bool {
	if w.Held != nil {
		return len(w.Held) < w.limit
	}
	return idle
}

// Settle takes st's message out of Held and calls ack or nack with its
// handle as the receiver settled it. A message no longer held (given back
// meanwhile) is left alone.
func (w *Window[H]) Settle(st Settlement, ack func(H), nack func(H, *message.Message)) {
	h, ok := w.Held[st.Msg]
	if !ok {
		return
	}
	delete(w.Held, st.Msg)
	if st.Acked {
		ack(h)
	} else {
		nack(h, st.Msg)
	}
}

// Watch waits for wm's Ack or Nack and reports it on Settled. It returns
// without a report once Stop was called. It is for a window opened with
// n > 1 (with a window of one, it would wait for ever).
func (w *Window[H]) Watch(wm *message.Message) {
	var st Settlement
	select {
	case <-wm.Acked():
		st = Settlement{Msg: wm, Acked: true}
	case <-wm.Nacked():
		st = Settlement{Msg: wm}
	case <-w.done:
		return
	}
	select {
	case w.Settled <- st:
	case <-w.done:
	}
}

// Stop ends every Watch: the pump calls it when it returns.
func (w *Window[H]) Stop() {
	if w.done != nil {
		close(w.done)
	}
}
