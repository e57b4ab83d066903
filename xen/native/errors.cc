extern "C" {
#include <xentoollog.h>
}

#include <cerrno>
#include <cstdarg>
#include <cstring>

#include "common.h"

namespace moat {

namespace {
Napi::FunctionReference* error_class = nullptr;

void QuietMessage(xentoollog_logger*, xentoollog_level, int, const char*, const char*, va_list) {}
void QuietProgress(xentoollog_logger*, const char*, const char*, int, unsigned long,
                   unsigned long) {}
void QuietDestroy(xentoollog_logger*) {}
xentoollog_logger quiet_logger = {QuietMessage, QuietProgress, QuietDestroy};
}  // namespace

xentoollog_logger* QuietLogger() { return &quiet_logger; }

void SetErrorClass(const Napi::Function& ctor) {
  if (error_class == nullptr) error_class = new Napi::FunctionReference();
  *error_class = Napi::Persistent(ctor);
}

Napi::Error MakeXenError(Napi::Env env, const std::string& operation, int err,
                         const std::string& detail) {
  const char* name = strerrorname_np(err);
  std::string code = name ? name : ("errno " + std::to_string(err));
  std::string text = detail.empty() ? std::string(strerror(err)) : detail;
  if (error_class != nullptr && !error_class->IsEmpty()) {
    Napi::Value e = error_class->New({Napi::String::New(env, operation), Napi::Number::New(env, err),
                                      Napi::String::New(env, code), Napi::String::New(env, text)});
    return Napi::Error(env, e);
  }
  // Loaded without the TS wrapper: a plain Error with the same fields.
  Napi::Error e = Napi::Error::New(env, operation + " failed: " + code + ": " + text);
  e.Set("operation", Napi::String::New(env, operation));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, code));
  return e;
}

void ThrowXenError(Napi::Env env, const std::string& operation, int err, const std::string& detail) {
  throw MakeXenError(env, operation, err, detail);
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer in 0..2^32-1");
  return static_cast<uint32_t>(d);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(info.Env(), "argument must be a Uint8Array");
  return info[0].As<Napi::Uint8Array>();
}

void CallFromLoop(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext* ctx,
                  const std::initializer_list<napi_value>& args) {
  if (fn.IsEmpty()) return;
  Napi::HandleScope scope(env);
  try {
    // napi_make_callback converts the receiver to an object: undefined would throw.
    fn.MakeCallback(env.Global(), args, ctx ? static_cast<napi_async_context>(*ctx) : nullptr);
  } catch (const Napi::Error& e) {
    // Report like any other asynchronous error (process 'uncaughtException').
    napi_fatal_exception(env, e.Value());
  }
}

FdPoller::FdPoller(Napi::Env env, int fd, void* owner, OnReadable cb) : env_(env), owner_(owner), cb_(cb) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
    ThrowXenError(env, "uv_poll_init", EINVAL, "no event loop");
  handle_ = new uv_poll_t;
  int r = uv_poll_init(loop, handle_, fd);
  if (r != 0) {
    delete handle_;
    handle_ = nullptr;
    ThrowXenError(env, "uv_poll_init", -r);
  }
  handle_->data = this;
  r = uv_poll_start(handle_, UV_READABLE, OnPoll);
  if (r != 0) {
    Close();
    ThrowXenError(env, "uv_poll_start", -r);
  }
}

void FdPoller::OnPoll(uv_poll_t* handle, int status, int) {
  auto* self = static_cast<FdPoller*>(handle->data);
  if (self == nullptr || self->owner_ == nullptr) return;
  // Nothing may escape into libuv (that would terminate the process): report anything
  // thrown here as an uncaught JS exception instead.
  Napi::Env env = self->env_;
  Napi::HandleScope scope(env);
  try {
    self->cb_(self->owner_, status);
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  } catch (const std::exception& e) {
    napi_fatal_exception(env, Napi::Error::New(env, std::string("moat_xen poll callback: ") + e.what()).Value());
  } catch (...) {
    napi_fatal_exception(env, Napi::Error::New(env, "moat_xen poll callback: unknown C++ exception").Value());
  }
}

void FdPoller::Close() {
  owner_ = nullptr;
  if (handle_ == nullptr) return;
  uv_poll_stop(handle_);
  handle_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  handle_ = nullptr;
}

}  // namespace moat
