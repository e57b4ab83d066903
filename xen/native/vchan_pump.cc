// A libxenvchan end moved by its own thread ("pump") through two local byte buffers.
//
// Why: with libxenvchan's smallest rings (1 KiB / 2 KiB, what vchan-socket-proxy's server
// and Qubes' small channels use) every 1-2 KiB costs an event round trip. Driven from the
// JS event loop, the ring only moves when JS runs, so each round trip pays a trip through
// JavaScript, which emulation and load slow most (lab measurements: ours at 0.55-0.59 of the
// C proxy). The pump thread keeps the ring moving at C speed while JS takes and gives data
// in large batches, as the C proxy does with its process and pipe.
//
// Threading: after construction only the pump thread calls libxenvchan; the JS thread only
// touches the two buffers and flags under `mu`. The pump wakes JS through a uv_async (coalesced)
// and JS wakes the pump through an eventfd (only when the pump waits for JS).
extern "C" {
#include <libxenvchan.h>
}
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

#include "common.h"

namespace moat {

namespace {

// A fixed-capacity byte FIFO (circular buffer).
class ByteFifo {
 public:
  explicit ByteFifo(size_t capacity) : buf_(capacity) {}
  size_t used() const { return used_; }
  size_t space() const { return buf_.size() - used_; }
  // The contiguous free span at the tail.
  uint8_t* tail(size_t* n) {
    size_t at = (head_ + used_) % buf_.size();
    *n = std::min(space(), buf_.size() - at);
    return buf_.data() + at;
  }
  void commit(size_t n) { used_ += n; }
  // The contiguous used span at the head.
  const uint8_t* head(size_t* n) const {
    *n = std::min(used_, buf_.size() - head_);
    return buf_.data() + head_;
  }
  // The head only moves forward, even when the FIFO empties: the producer may be filling the
  // tail span it was given without holding the lock.
  void consume(size_t n) {
    used_ -= n;
    head_ = (head_ + n) % buf_.size();
  }
  size_t push(const uint8_t* data, size_t n) {
    size_t done = 0;
    while (done < n && space() > 0) {
      size_t span;
      uint8_t* p = tail(&span);
      size_t k = std::min(span, n - done);
      memcpy(p, data + done, k);
      commit(k);
      done += k;
    }
    return done;
  }
  size_t pop(uint8_t* into, size_t n) {
    size_t done = 0;
    while (done < n && used_ > 0) {
      size_t span;
      const uint8_t* p = head(&span);
      size_t k = std::min(span, n - done);
      memcpy(into + done, p, k);
      consume(k);
      done += k;
    }
    return done;
  }
  // Only the consumer may clear (the pump clears tx, whose consumer it is).
  void clear() { consume(used_); }

 private:
  std::vector<uint8_t> buf_;
  size_t head_ = 0;
  size_t used_ = 0;
};

// How long a closed end keeps writing what JS gave it before closing the channel anyway
// (the peer may never read); the same bound as the unix-socket transport's close.
constexpr auto kFlushLimit = std::chrono::seconds(10);

class PumpedVchan;

// State shared by the JS object and the pump thread. Freed in the uv_async's close callback,
// after the thread has ended, so neither side can outlive it.
struct Pump {
  libxenvchan* ctrl = nullptr;  // the pump thread's alone once it runs
  int event_fd = -1;
  int wake_fd = -1;
  pthread_t thread{};
  uv_async_t* async = nullptr;

  std::mutex mu;  // guards everything below
  ByteFifo rx;    // ring -> JS
  ByteFifo tx;    // JS -> ring
  int state;      // as JS sees it: libxenvchan_is_open's 2 waiting, 1 open, 0 closed and drained
  bool peer_closed = false;  // the peer closed: tx is dropped, writes fail
  bool rx_stalled = false;   // the pump stopped reading because rx was full
  // JS found tx full and waits for space: it is told once half of tx is free, so that it
  // refills in batches instead of once per ring-full. (New rx data is always told at once,
  // coalesced by notify_pending: a reader that keeps up wants it without delay.)
  bool js_wants_space = false;
  bool closing = false;      // JS closed: write out tx (bounded), then close the channel
  std::chrono::steady_clock::time_point flush_deadline{};
  bool finished = false;       // the thread has closed the channel and ended
  bool notify_pending = false;  // uv_async_send done, its callback not yet run
  bool wake_pending = false;    // wake_fd written, not yet read by the pump
  PumpedVchan* owner = nullptr;  // the JS object to call back; null once JS closed

  Pump(libxenvchan* c, size_t rx_bytes, size_t tx_bytes, int initial_state)
      : ctrl(c), rx(rx_bytes), tx(tx_bytes), state(initial_state) {}

  // With mu held: whether the caller must WakePump() after unlocking.
  bool NeedWakeLocked() {
    if (wake_pending) return false;
    wake_pending = true;
    return true;
  }
  void WakePump() const {
    uint64_t one = 1;
    // An eventfd write fails only if the counter would overflow: it is then readable anyway.
    ssize_t ignored = write(wake_fd, &one, sizeof one);
    (void)ignored;
  }

  static void* Run(void* arg) {
    static_cast<Pump*>(arg)->Loop();
    return nullptr;
  }
  void Loop();
  // Moves bytes between the ring and the buffers; returns true when the thread should end.
  bool Move();
};

bool Pump::Move() {
  // The ring calls (and their notify hypercalls) run without the lock: rx's tail and tx's
  // head are the pump's alone (single producer, single consumer), so the lock only guards
  // the counts. JS is woken after unlocking, so it never wakes into a held lock.
  bool notify = false;
  int open = libxenvchan_is_open(ctrl);
  if (open != 2) {
    // Ring -> rx. libxenvchan_data_ready asks the peer to signal new data, so stopping at 0
    // guarantees an event later.
    for (;;) {
      size_t span;
      uint8_t* p;
      {
        std::lock_guard<std::mutex> lock(mu);
        p = rx.tail(&span);
        rx_stalled = span == 0;  // read() wakes us once it makes room
      }
      if (span == 0) break;
      int ready = libxenvchan_data_ready(ctrl);
      if (ready <= 0) break;
      int n = libxenvchan_read(ctrl, p, std::min(span, static_cast<size_t>(ready)));
      if (n <= 0) break;
      std::lock_guard<std::mutex> lock(mu);
      rx.commit(static_cast<size_t>(n));
      notify = true;
    }
  }
  if (open == 1) {
    // tx -> ring. libxenvchan_buffer_space asks the peer to signal freed space likewise.
    for (;;) {
      size_t span;
      const uint8_t* p;
      {
        std::lock_guard<std::mutex> lock(mu);
        p = tx.head(&span);  // empty: write() wakes us when it puts bytes into an empty tx
      }
      if (span == 0) break;
      int space = libxenvchan_buffer_space(ctrl);
      if (space <= 0) break;
      int n = libxenvchan_write(ctrl, p, std::min(span, static_cast<size_t>(space)));
      if (n < 0) {
        open = 0;
        break;
      }
      if (n == 0) break;
      std::lock_guard<std::mutex> lock(mu);
      tx.consume(static_cast<size_t>(n));
      if (js_wants_space && tx.used() <= tx.space()) {
        js_wants_space = false;
        notify = true;
      }
    }
  }
  // JS sees 'closed' only once everything the peer wrote has reached rx.
  int visible = open == 0 && libxenvchan_data_ready(ctrl) > 0 ? 1 : open;
  bool send = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (open == 0 && !peer_closed) {
      peer_closed = true;
      tx.clear();  // nobody will read it: the writes that put it there fail from now on
      notify = true;
    }
    if (visible != state) {
      state = visible;
      notify = true;
    }
    if (closing) return tx.used() == 0 || open != 1 || std::chrono::steady_clock::now() >= flush_deadline;
    if (notify && !notify_pending) {
      notify_pending = true;
      send = true;
    }
  }
  if (send) uv_async_send(async);
  return false;
}

void Pump::Loop() {
  for (;;) {
    if (Move()) break;
    int timeout = -1;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (closing) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            flush_deadline - std::chrono::steady_clock::now());
        timeout = static_cast<int>(std::max<int64_t>(1, left.count()));
      }
    }
    pollfd fds[2] = {{event_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    int r = poll(fds, 2, timeout);
    const short broken = POLLERR | POLLHUP | POLLNVAL;
    if ((r < 0 && errno != EINTR) || (r > 0 && ((fds[0].revents | fds[1].revents) & broken))) {
      // Cannot wait any more (should not happen): report the channel closed rather than spin.
      std::lock_guard<std::mutex> lock(mu);
      peer_closed = true;
      state = 0;
      tx.clear();
      break;  // the exit below tells JS
    }
    // Consumes the pending event and unmasks the port; EAGAIN (spurious wake-up) is fine.
    if (r > 0 && (fds[0].revents & POLLIN)) libxenvchan_wait(ctrl);
    if (r > 0 && (fds[1].revents & POLLIN)) {
      uint64_t count;
      ssize_t ignored = read(wake_fd, &count, sizeof count);
      (void)ignored;
      std::lock_guard<std::mutex> lock(mu);
      wake_pending = false;
    }
  }
  libxenvchan_close(ctrl);  // unmaps the rings; the peer sees us closed
  ctrl = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  finished = true;
  uv_async_send(async);
}

class PumpedVchan : public Napi::ObjectWrap<PumpedVchan> {
 public:
  static Napi::FunctionReference* ctor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "PumpedVchan",
        {InstanceMethod<&PumpedVchan::Read>("read"), InstanceMethod<&PumpedVchan::Write>("write"),
         InstanceMethod<&PumpedVchan::DataReady>("dataReady"),
         InstanceMethod<&PumpedVchan::BufferSpace>("bufferSpace"),
         InstanceMethod<&PumpedVchan::IsOpen>("isOpen"), InstanceMethod<&PumpedVchan::Start>("start"),
         InstanceMethod<&PumpedVchan::Close>("close")});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
  }

  // new PumpedVchan(External<libxenvchan>, bufferBytes): takes the channel over.
  PumpedVchan(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PumpedVchan>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsExternal())
      throw Napi::TypeError::New(env, "PumpedVchan is created by serverInit/clientInit");
    auto* ctrl = info[0].As<Napi::External<libxenvchan>>().Data();
    uint32_t bytes = ArgU32(info, 1, "bufferBytes");
    ctrl->blocking = 0;
    int event_fd = libxenvchan_fd_for_select(ctrl);
    int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    uv_loop_t* loop = nullptr;
    if (wake_fd < 0 || napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      int err = wake_fd < 0 ? errno : EINVAL;
      if (wake_fd >= 0) close(wake_fd);
      libxenvchan_close(ctrl);
      ThrowXenError(env, "vchan pump setup", err);
    }
    pump_ = new Pump(ctrl, bytes, bytes, libxenvchan_is_open(ctrl));
    pump_->event_fd = event_fd;
    pump_->wake_fd = wake_fd;
    pump_->owner = this;
    pump_->async = new uv_async_t;
    pump_->async->data = pump_;
    uv_async_init(loop, pump_->async, &PumpedVchan::OnAsync);
    // Until JS listens, a channel does not keep the process alive (as with the direct end).
    uv_unref(reinterpret_cast<uv_handle_t*>(pump_->async));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int r = pthread_create(&pump_->thread, &attr, &Pump::Run, pump_);
    pthread_attr_destroy(&attr);
    if (r != 0) {
      Pump* p = pump_;
      pump_ = nullptr;
      libxenvchan_close(p->ctrl);
      close(p->wake_fd);
      uv_close(reinterpret_cast<uv_handle_t*>(p->async), &PumpedVchan::FreeAfterClose);
      ThrowXenError(env, "pthread_create (vchan pump)", r);
    }
  }
  ~PumpedVchan() override { Detach(); }

 private:
  Pump* pump_ = nullptr;
  Napi::FunctionReference listener_;
  std::unique_ptr<Napi::AsyncContext> async_;
  bool started_ = false;

  Pump* Live(Napi::Env env, const char* op) {
    if (pump_ == nullptr) ThrowXenError(env, op, EBADF, "vchan already closed");
    return pump_;
  }

  // Returns bytes read, 0 when nothing is ready, -1 when closed and empty (as libxenvchan_read).
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Pump* p = Live(info.Env(), "libxenvchan_read");
    Napi::Uint8Array b = ArgBytes(info);
    size_t n;
    bool wake = false;
    bool closed;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      n = p->rx.pop(b.Data(), b.ElementLength());
      if (n > 0 && p->rx_stalled) wake = p->NeedWakeLocked();
      closed = p->state == 0;
    }
    if (wake) p->WakePump();
    if (n == 0 && closed) return Napi::Number::New(info.Env(), -1);
    return Napi::Number::New(info.Env(), static_cast<double>(n));
  }
  // Returns bytes taken (0 when the buffer is full), -1 when the peer has closed.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Pump* p = Live(info.Env(), "libxenvchan_write");
    Napi::Uint8Array b = ArgBytes(info);
    size_t n;
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      if (p->peer_closed) return Napi::Number::New(info.Env(), -1);
      bool was_empty = p->tx.used() == 0;
      n = p->tx.push(b.Data(), b.ElementLength());
      if (n > 0 && was_empty) wake = p->NeedWakeLocked();
      if (n < b.ElementLength()) p->js_wants_space = true;
    }
    if (wake) p->WakePump();
    return Napi::Number::New(info.Env(), static_cast<double>(n));
  }
  Napi::Value DataReady(const Napi::CallbackInfo& info) {
    Pump* p = Live(info.Env(), "libxenvchan_data_ready");
    std::lock_guard<std::mutex> lock(p->mu);
    return Napi::Number::New(info.Env(), static_cast<double>(p->rx.used()));
  }
  Napi::Value BufferSpace(const Napi::CallbackInfo& info) {
    Pump* p = Live(info.Env(), "libxenvchan_buffer_space");
    std::lock_guard<std::mutex> lock(p->mu);
    if (p->tx.space() == 0) p->js_wants_space = true;
    return Napi::Number::New(info.Env(), p->peer_closed ? 0.0 : static_cast<double>(p->tx.space()));
  }
  Napi::Value IsOpen(const Napi::CallbackInfo& info) {
    if (pump_ == nullptr) return Napi::Number::New(info.Env(), 0);
    std::lock_guard<std::mutex> lock(pump_->mu);
    return Napi::Number::New(info.Env(), pump_->state);
  }
  void Start(const Napi::CallbackInfo& info) {
    Pump* p = Live(info.Env(), "vchan pump");
    if (info.Length() < 1 || !info[0].IsFunction())
      throw Napi::TypeError::New(info.Env(), "listener must be a function");
    if (started_) throw Napi::Error::New(info.Env(), "vchan pump already started");
    started_ = true;
    listener_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(info.Env(), "moat:vchan");
    uv_ref(reinterpret_cast<uv_handle_t*>(p->async));
    Ref();  // kept alive while the pump may call back
  }

  static void OnAsync(uv_async_t* handle) {
    auto* p = static_cast<Pump*>(handle->data);
    PumpedVchan* owner;
    bool finished;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      p->notify_pending = false;
      finished = p->finished;
      owner = p->owner;
    }
    if (finished) {
      // The thread has ended (it closed the channel): join it and free the shared state.
      if (owner != nullptr) owner->pump_ = nullptr;
      pthread_join(p->thread, nullptr);
      close(p->wake_fd);
      uv_close(reinterpret_cast<uv_handle_t*>(handle), &PumpedVchan::FreeAfterClose);
    }
    if (owner != nullptr && !owner->listener_.IsEmpty()) {
      CallFromLoop(owner->Env(), owner->listener_, owner->async_.get(), {});
    }
  }
  static void FreeAfterClose(uv_handle_t* handle) {
    auto* p = static_cast<Pump*>(handle->data);
    delete reinterpret_cast<uv_async_t*>(handle);
    delete p;
  }

  // Hands the pump over to its own shutdown: it writes out what JS gave it (at most
  // kFlushLimit), closes the channel, and the uv_async (ref'd until then, so node waits for
  // the flush) frees everything.
  void Detach() {
    Pump* p = pump_;
    if (p == nullptr) return;
    pump_ = nullptr;
    bool wake;
    {
      std::lock_guard<std::mutex> lock(p->mu);
      p->owner = nullptr;
      p->closing = true;
      p->flush_deadline = std::chrono::steady_clock::now() + kFlushLimit;
      if (!p->finished) uv_ref(reinterpret_cast<uv_handle_t*>(p->async));
      wake = p->NeedWakeLocked();
    }
    // The eventfd outlives the thread until OnAsync has joined it, so this write is safe.
    if (wake) p->WakePump();
  }
  void Close(const Napi::CallbackInfo& info) {
    Detach();
    listener_.Reset();
    async_.reset();
    if (started_) {
      started_ = false;
      Unref();
    }
  }
};

Napi::FunctionReference* PumpedVchan::ctor = nullptr;

}  // namespace

void InitPumpedVchan(Napi::Env env, Napi::Object exports) { PumpedVchan::Init(env, exports); }

Napi::Object NewPumpedVchan(Napi::Env env, libxenvchan* ctrl, uint32_t buffer_bytes) {
  return PumpedVchan::ctor->New({Napi::External<libxenvchan>::New(env, ctrl), Napi::Number::New(env, buffer_bytes)});
}

}  // namespace moat
