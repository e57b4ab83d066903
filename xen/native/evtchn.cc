// Event channels through libxenevtchn (/dev/xen/evtchn). The device fd is made
// non-blocking and watched with uv_poll; each readable wake-up drains every pending
// port and hands them to JS in one call, which unmasks them after its listeners ran.
#include <fcntl.h>
extern "C" {
#include <xenevtchn.h>
}

#include <cerrno>
#include <vector>

#include "common.h"

namespace moat {

namespace {

class Evtchn : public Napi::ObjectWrap<Evtchn> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "Evtchn",
        {InstanceMethod<&Evtchn::BindInterdomain>("bindInterdomain"),
         InstanceMethod<&Evtchn::BindUnbound>("bindUnbound"), InstanceMethod<&Evtchn::Notify>("notify"),
         InstanceMethod<&Evtchn::Unbind>("unbind"), InstanceMethod<&Evtchn::Unmask>("unmask"),
         InstanceMethod<&Evtchn::Start>("start"), InstanceMethod<&Evtchn::Close>("close")});
    exports.Set("Evtchn", f);
  }

  Evtchn(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Evtchn>(info) {
    errno = 0;
    xce_ = xenevtchn_open(QuietLogger(), 0);
    if (xce_ == nullptr) ThrowXenError(info.Env(), "open /dev/xen/evtchn", errno ? errno : ENODEV);
    int fd = xenevtchn_fd(xce_);
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      int err = errno;
      xenevtchn_close(xce_);
      xce_ = nullptr;
      ThrowXenError(info.Env(), "fcntl /dev/xen/evtchn O_NONBLOCK", err);
    }
  }
  ~Evtchn() override { Shutdown(); }

 private:
  xenevtchn_handle* xce_ = nullptr;
  std::unique_ptr<FdPoller> poller_;
  Napi::FunctionReference listener_;
  std::unique_ptr<Napi::AsyncContext> async_;

  xenevtchn_handle* Live(Napi::Env env, const char* op) {
    if (xce_ == nullptr) ThrowXenError(env, op, EBADF, "event channels already closed");
    return xce_;
  }

  Napi::Value BindInterdomain(const Napi::CallbackInfo& info) {
    auto* h = Live(info.Env(), "xenevtchn_bind_interdomain");
    uint32_t dom = ArgU32(info, 0, "domain");
    uint32_t port = ArgU32(info, 1, "remotePort");
    xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(h, dom, port);
    if (p < 0) ThrowXenError(info.Env(), "xenevtchn_bind_interdomain", errno);
    return Napi::Number::New(info.Env(), p);
  }
  Napi::Value BindUnbound(const Napi::CallbackInfo& info) {
    auto* h = Live(info.Env(), "xenevtchn_bind_unbound_port");
    uint32_t dom = ArgU32(info, 0, "domain");
    xenevtchn_port_or_error_t p = xenevtchn_bind_unbound_port(h, dom);
    if (p < 0) ThrowXenError(info.Env(), "xenevtchn_bind_unbound_port", errno);
    return Napi::Number::New(info.Env(), p);
  }
  void Notify(const Napi::CallbackInfo& info) {
    auto* h = Live(info.Env(), "xenevtchn_notify");
    if (xenevtchn_notify(h, ArgU32(info, 0, "port")) < 0) ThrowXenError(info.Env(), "xenevtchn_notify", errno);
  }
  void Unbind(const Napi::CallbackInfo& info) {
    auto* h = Live(info.Env(), "xenevtchn_unbind");
    if (xenevtchn_unbind(h, ArgU32(info, 0, "port")) < 0) ThrowXenError(info.Env(), "xenevtchn_unbind", errno);
  }
  void Unmask(const Napi::CallbackInfo& info) {
    auto* h = Live(info.Env(), "xenevtchn_unmask");
    if (xenevtchn_unmask(h, ArgU32(info, 0, "port")) < 0) ThrowXenError(info.Env(), "xenevtchn_unmask", errno);
  }
  // start(listener: (ports: number[]) => void)
  void Start(const Napi::CallbackInfo& info) {
    auto* h = Live(info.Env(), "evtchn poll");
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "listener must be a function");
    if (poller_) throw Napi::Error::New(info.Env(), "evtchn poll already started");
    listener_ = Napi::Persistent(info[0].As<Napi::Function>());
    async_ = std::make_unique<Napi::AsyncContext>(info.Env(), "moat:evtchn");
    poller_ = std::make_unique<FdPoller>(info.Env(), xenevtchn_fd(h), this, &Evtchn::OnReadable);
    Ref();  // keep the object alive while the poll is active
  }
  static void OnReadable(void* owner, int status) {
    auto* self = static_cast<Evtchn*>(owner);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    std::vector<uint32_t> ports;
    // Bounded drain: the fd stays readable if more remain.
    while (self->xce_ != nullptr && ports.size() < 1024) {
      xenevtchn_port_or_error_t p = xenevtchn_pending(self->xce_);
      if (p < 0) break;  // EAGAIN: nothing more
      ports.push_back(static_cast<uint32_t>(p));
    }
    if (ports.empty() && status >= 0) return;
    Napi::Array arr = Napi::Array::New(env, ports.size());
    for (size_t i = 0; i < ports.size(); i++) arr.Set(static_cast<uint32_t>(i), ports[i]);
    CallFromLoop(env, self->listener_, self->async_.get(), {arr});
  }
  void Shutdown() {
    if (poller_) {
      poller_->Close();
      poller_.reset();
    }
    if (xce_ != nullptr) {
      xenevtchn_close(xce_);
      xce_ = nullptr;
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

}  // namespace

void InitEvtchn(Napi::Env env, Napi::Object exports) { Evtchn::Init(env, exports); }

}  // namespace moat
