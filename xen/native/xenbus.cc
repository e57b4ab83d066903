// /dev/xen/xenbus (a domU's xenstore device) opened non-blocking and watched with
// uv_poll; and the own domain id, read once through libxenstore.
#include <fcntl.h>
#include <unistd.h>
extern "C" {
#include <xenstore.h>
}

#include <cerrno>
#include <cstdlib>

#include "common.h"

namespace moat {

namespace {

// xenstore's payload limit (4096) plus its 16-byte header: one read never returns more.
constexpr size_t kChunk = 4096 + 16;

class Xenbus : public Napi::ObjectWrap<Xenbus> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "Xenbus",
                                   {InstanceMethod<&Xenbus::Write>("write"), InstanceMethod<&Xenbus::Start>("start"),
                                    InstanceMethod<&Xenbus::Close>("close")});
    exports.Set("Xenbus", f);
  }

  Xenbus(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Xenbus>(info) {
    path_ = ArgString(info, 0, "path");
    fd_ = open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) ThrowXenError(info.Env(), "open " + path_, errno);
  }
  ~Xenbus() override { Shutdown(); }

 private:
  std::string path_;
  int fd_ = -1;
  std::unique_ptr<FdPoller> poller_;
  Napi::FunctionReference on_data_, on_error_;
  std::unique_ptr<Napi::AsyncContext> async_;

  void Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) ThrowXenError(env, "write " + path_, EBADF, "device already closed");
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "message must be a Uint8Array");
    Napi::Uint8Array m = info[0].As<Napi::Uint8Array>();
    ssize_t n;
    do n = write(fd_, m.Data(), m.ElementLength());
    while (n < 0 && errno == EINTR);
    if (n < 0) ThrowXenError(env, "write " + path_, errno);
    if (static_cast<size_t>(n) != m.ElementLength())
      ThrowXenError(env, "write " + path_, EIO, "short write of a whole message");
  }
  void Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) ThrowXenError(env, "poll " + path_, EBADF, "device already closed");
    if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction())
      throw Napi::TypeError::New(env, "start(onData, onError)");
    if (poller_) throw Napi::Error::New(env, "xenbus poll already started");
    on_data_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[1].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(env, "moat:xenbus");
    poller_ = std::make_unique<FdPoller>(env, fd_, this, &Xenbus::OnReadable);
    Ref();
  }
  static void OnReadable(void* owner, int status) {
    auto* self = static_cast<Xenbus*>(owner);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (status < 0) {
      Napi::Error e = MakeXenError(env, "poll " + self->path_, -status);
      CallFromLoop(env, self->on_error_, self->async_.get(), {e.Value()});
      return;
    }
    // Bounded: at most 64 chunks per wake-up, the fd stays readable for the rest.
    for (int i = 0; i < 64 && self->fd_ >= 0; i++) {
      uint8_t buf[kChunk];
      ssize_t n = read(self->fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        Napi::Error e = MakeXenError(env, "read " + self->path_, n < 0 ? errno : EPIPE,
                                     n < 0 ? "" : "end of file on the xenbus device");
        CallFromLoop(env, self->on_error_, self->async_.get(), {e.Value()});
        return;
      }
      Napi::Uint8Array chunk = Napi::Uint8Array::New(env, static_cast<size_t>(n));
      memcpy(chunk.Data(), buf, static_cast<size_t>(n));
      CallFromLoop(env, self->on_data_, self->async_.get(), {chunk});
    }
  }
  void Shutdown() {
    if (poller_) {
      poller_->Close();
      poller_.reset();
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  void Close(const Napi::CallbackInfo& info) {
    bool was_polling = static_cast<bool>(poller_);
    Shutdown();
    on_data_.Reset();
    on_error_.Reset();
    async_.reset();
    if (was_polling) Unref();
  }
};

// ownDomainId() -> number: libxenstore's xs_read of the relative key `domid` (what
// libxenvchan itself does), i.e. /local/domain/<self>/domid, written by the toolstack.
Napi::Value OwnDomainId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  errno = 0;
  struct xs_handle* xs = xs_open(0);
  if (xs == nullptr) ThrowXenError(env, "xs_open", errno ? errno : ENOENT);
  unsigned int len = 0;
  char* v = static_cast<char*>(xs_read(xs, XBT_NULL, "domid", &len));
  int err = errno;
  xs_close(xs);
  if (v == nullptr) ThrowXenError(env, "xs_read domid", err ? err : ENOENT);
  char* end = nullptr;
  long id = strtol(v, &end, 10);
  bool ok = len > 0 && end == v + len && id >= 0 && id < 0x7ff0;
  std::string text(v, len);
  free(v);
  if (!ok) ThrowXenError(env, "xs_read domid", EINVAL, "not a domain id: '" + text + "'");
  return Napi::Number::New(env, static_cast<double>(id));
}

}  // namespace

void InitXenbus(Napi::Env env, Napi::Object exports) {
  Xenbus::Init(env, exports);
  exports.Set("ownDomainId", Napi::Function::New(env, OwnDomainId));
}

}  // namespace moat
