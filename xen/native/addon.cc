// moat_xen: the native side of @moat/xen. The TypeScript in src/native/ is its only
// caller; it passes the XenError class in first so every failure throws one.
#include "common.h"

namespace moat {

namespace {
void SetErrorClassJs(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "XenError class expected");
  SetErrorClass(info[0].As<Napi::Function>());
}
}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClassJs));
  InitMapping(env, exports);
  InitEvtchn(env, exports);
  InitGrants(env, exports);
  InitVchan(env, exports);
  InitXenbus(env, exports);
  return exports;
}

}  // namespace moat

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return moat::Init(env, exports); }

NODE_API_MODULE(moat_xen, InitModule)
