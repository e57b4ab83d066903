// libxenvchan, non-blocking, driven by its event-channel fd with uv_poll: on each
// wake-up libxenvchan_wait() consumes the pending event (and unmasks it), then the JS
// listener runs and retries its reads and writes.
#include <fcntl.h>
extern "C" {
#include <libxenvchan.h>
}

#include <cerrno>

#include "common.h"

namespace moat {

namespace {

class Vchan : public Napi::ObjectWrap<Vchan> {
 public:
  static Napi::FunctionReference* ctor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "Vchan",
        {InstanceMethod<&Vchan::Read>("read"), InstanceMethod<&Vchan::Write>("write"),
         InstanceMethod<&Vchan::DataReady>("dataReady"), InstanceMethod<&Vchan::BufferSpace>("bufferSpace"),
         InstanceMethod<&Vchan::IsOpen>("isOpen"), InstanceMethod<&Vchan::Start>("start"),
         InstanceMethod<&Vchan::Close>("close")});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    exports.Set("Vchan", f);
  }

  Vchan(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vchan>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "Vchan is created by serverInit/clientInit");
    ctrl_ = info[0].As<Napi::External<libxenvchan>>().Data();
    ctrl_->blocking = 0;
    int fd = libxenvchan_fd_for_select(ctrl_);
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  ~Vchan() override { Shutdown(); }

 private:
  libxenvchan* ctrl_ = nullptr;
  std::unique_ptr<FdPoller> poller_;
  Napi::FunctionReference listener_;
  std::unique_ptr<Napi::AsyncContext> async_;

  libxenvchan* Live(Napi::Env env, const char* op) {
    if (ctrl_ == nullptr) ThrowXenError(env, op, EBADF, "vchan already closed");
    return ctrl_;
  }

  // Returns bytes read, 0 when nothing is ready, -1 when closed and empty.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    auto* c = Live(info.Env(), "libxenvchan_read");
    Napi::Uint8Array b = ArgBytes(info);
    if (b.ElementLength() == 0) return Napi::Number::New(info.Env(), 0);
    int r = libxenvchan_read(c, b.Data(), b.ElementLength());
    return Napi::Number::New(info.Env(), r);
  }
  // Returns bytes written (0 when the ring is full), -1 when the peer has closed.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    auto* c = Live(info.Env(), "libxenvchan_write");
    Napi::Uint8Array b = ArgBytes(info);
    if (b.ElementLength() == 0) return Napi::Number::New(info.Env(), 0);
    int r = libxenvchan_write(c, b.Data(), b.ElementLength());
    return Napi::Number::New(info.Env(), r);
  }
  Napi::Value DataReady(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), libxenvchan_data_ready(Live(info.Env(), "libxenvchan_data_ready")));
  }
  Napi::Value BufferSpace(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), libxenvchan_buffer_space(Live(info.Env(), "libxenvchan_buffer_space")));
  }
  Napi::Value IsOpen(const Napi::CallbackInfo& info) {
    if (ctrl_ == nullptr) return Napi::Number::New(info.Env(), 0);
    return Napi::Number::New(info.Env(), libxenvchan_is_open(ctrl_));
  }
  void Start(const Napi::CallbackInfo& info) {
    auto* c = Live(info.Env(), "vchan poll");
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "listener must be a function");
    if (poller_) throw Napi::Error::New(info.Env(), "vchan poll already started");
    listener_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(info.Env(), "moat:vchan");
    poller_ = std::make_unique<FdPoller>(info.Env(), libxenvchan_fd_for_select(c), this, &Vchan::OnReadable);
    Ref();
  }
  static void OnReadable(void* owner, int status) {
    auto* self = static_cast<Vchan*>(owner);
    if (self->ctrl_ == nullptr) return;
    // Consumes one pending event and unmasks the port; EAGAIN (spurious wake-up) is fine.
    if (libxenvchan_wait(self->ctrl_) < 0 && errno != EAGAIN && status >= 0) return;
    CallFromLoop(self->Env(), self->listener_, self->async_.get(), {});
  }
  void Shutdown() {
    if (poller_) {
      poller_->Close();
      poller_.reset();
    }
    if (ctrl_ != nullptr) {
      libxenvchan_close(ctrl_);
      ctrl_ = nullptr;
    }
  }
  void Close(const Napi::CallbackInfo& info) {
    bool was_polling = static_cast<bool>(poller_);
    Shutdown();
    listener_.Reset();
    async_.reset();
    if (was_polling) Unref();
  }
};

Napi::FunctionReference* Vchan::ctor = nullptr;

// The direct end, or with bufferBytes > 0 the pumped one (vchan_pump.cc).
Napi::Value Wrap(const Napi::CallbackInfo& info, size_t buffer_arg, libxenvchan* c) {
  Napi::Env env = info.Env();
  uint32_t buffer_bytes = info.Length() > buffer_arg ? ArgU32(info, buffer_arg, "bufferBytes") : 0;
  if (buffer_bytes > 0) return NewPumpedVchan(env, c, buffer_bytes);
  return Vchan::ctor->New({Napi::External<libxenvchan>::New(env, c)});
}

// serverInit(domain, path, readMin, writeMin, bufferBytes = 0) -> Vchan | PumpedVchan
Napi::Value ServerInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dom = ArgU32(info, 0, "domain");
  std::string path = ArgString(info, 1, "path");
  uint32_t read_min = ArgU32(info, 2, "readMin");
  uint32_t write_min = ArgU32(info, 3, "writeMin");
  if (info.Length() > 4) ArgU32(info, 4, "bufferBytes");  // checked before anything is published
  errno = 0;
  libxenvchan* c = libxenvchan_server_init(QuietLogger(), static_cast<int>(dom), path.c_str(), read_min, write_min);
  if (c == nullptr) ThrowXenError(env, "libxenvchan_server_init", errno ? errno : EINVAL, path);
  return Wrap(info, 4, c);
}

// clientInit(domain, path, bufferBytes = 0) -> Vchan | PumpedVchan
Napi::Value ClientInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dom = ArgU32(info, 0, "domain");
  std::string path = ArgString(info, 1, "path");
  if (info.Length() > 2) ArgU32(info, 2, "bufferBytes");
  errno = 0;
  libxenvchan* c = libxenvchan_client_init(QuietLogger(), static_cast<int>(dom), path.c_str());
  if (c == nullptr) ThrowXenError(env, "libxenvchan_client_init", errno ? errno : ENOENT, path);
  return Wrap(info, 2, c);
}

}  // namespace

void InitVchan(Napi::Env env, Napi::Object exports) {
  Vchan::Init(env, exports);
  InitPumpedVchan(env, exports);
  exports.Set("serverInit", Napi::Function::New(env, ServerInit));
  exports.Set("clientInit", Napi::Function::New(env, ClientInit));
}

}  // namespace moat
