// Shared declarations of the moat Xen addon. Every failure becomes a thrown JS
// XenError(operation, errno, code, detail); nothing here aborts the process.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

struct xentoollog_logger;
struct libxenvchan;

namespace moat {

// A logger that drops libxen* messages: every failure is reported as a XenError instead.
xentoollog_logger* QuietLogger();

// Stores the JS XenError constructor (set once by the TS loader).
void SetErrorClass(const Napi::Function& ctor);
// Builds a XenError for `operation` failing with `err` (a positive errno).
Napi::Error MakeXenError(Napi::Env env, const std::string& operation, int err,
                         const std::string& detail = "");
[[noreturn]] void ThrowXenError(Napi::Env env, const std::string& operation, int err,
                                const std::string& detail = "");

// Argument helpers that throw TypeError instead of crashing on bad input.
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* what);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* what);
// The first argument as a Uint8Array (vchan read/write buffers).
Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info);

// Calls a JS function from a libuv callback: exceptions become uncaught exceptions.
void CallFromLoop(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext* ctx,
                  const std::initializer_list<napi_value>& args);

// A uv_poll on an fd, owned by a JS object; freed in uv_close's callback.
class FdPoller {
 public:
  using OnReadable = void (*)(void* owner, int status);
  FdPoller(Napi::Env env, int fd, void* owner, OnReadable cb);
  void Close();  // idempotent; the memory is released asynchronously
 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);
  uv_poll_t* handle_ = nullptr;
  Napi::Env env_;
  void* owner_;
  OnReadable cb_;
};

void InitMapping(Napi::Env env, Napi::Object exports);
void InitEvtchn(Napi::Env env, Napi::Object exports);
void InitGrants(Napi::Env env, Napi::Object exports);
void InitVchan(Napi::Env env, Napi::Object exports);
void InitPumpedVchan(Napi::Env env, Napi::Object exports);
// A vchan end moved by its own thread through local buffers of `buffer_bytes` each way
// (vchan_pump.cc); takes `ctrl` over.
Napi::Object NewPumpedVchan(Napi::Env env, libxenvchan* ctrl, uint32_t buffer_bytes);
void InitXenbus(Napi::Env env, Napi::Object exports);

// Mapping kinds: who releases the memory and how.
enum class MapKind { Gntdev, Gntshr, Malloc };

// Creates a JS Mapping object (see mapping.cc) over `addr`; takes ownership.
Napi::Object NewMapping(Napi::Env env, MapKind kind, void* addr, size_t pages, size_t bytes,
                        bool writable, void* handle);

}  // namespace moat
