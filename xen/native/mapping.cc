// Mapping: one range of memory shared with another domain (gntdev map, gntalloc share)
// or, for tests and the index benchmark, malloc'd memory. Writable mappings expose an
// external ArrayBuffer that unmap() detaches before the memory goes away, so JS never
// holds a dangling pointer. Read-only mappings expose no buffer at all: they are read
// through readU8/16/32, load32 and copyTo, since a JS store into PROT_READ memory
// would kill the process.
extern "C" {
#include <xengnttab.h>
}

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common.h"

namespace moat {

namespace {

struct MapState {
  MapKind kind;
  void* addr;
  size_t pages;
  size_t bytes;
  void* handle;
  bool mapped = true;

  MapState(MapKind k, void* a, size_t p, size_t b, void* h)
      : kind(k), addr(a), pages(p), bytes(b), handle(h) {}
  ~MapState() { Release(); }

  // Returns 0 or an errno.
  int Release() {
    if (!mapped) return 0;
    mapped = false;
    int r = 0;
    switch (kind) {
      case MapKind::Gntdev:
        r = xengnttab_unmap(static_cast<xengnttab_handle*>(handle), addr, pages) == 0 ? 0 : errno;
        break;
      case MapKind::Gntshr:
        r = xengntshr_unshare(static_cast<xengntshr_handle*>(handle), addr, pages) == 0 ? 0 : errno;
        break;
      case MapKind::Malloc:
        free(addr);
        break;
    }
    addr = nullptr;
    return r;
  }
};

using StatePtr = std::shared_ptr<MapState>;

const char* KindName(MapKind k) {
  switch (k) {
    case MapKind::Gntdev:
      return "gntdev mapping";
    case MapKind::Gntshr:
      return "gntalloc pages";
    default:
      return "test buffer";
  }
}

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::FunctionReference* ctor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "Mapping",
        {InstanceAccessor<&Mapping::Buffer>("buffer"),
         InstanceAccessor<&Mapping::ByteLength>("byteLength"),
         InstanceAccessor<&Mapping::Mapped>("mapped"), InstanceMethod<&Mapping::ReadU8>("readU8"),
         InstanceMethod<&Mapping::ReadU16>("readU16"), InstanceMethod<&Mapping::ReadU32>("readU32"),
         InstanceMethod<&Mapping::Load32>("load32"), InstanceMethod<&Mapping::Store32>("store32"),
         InstanceMethod<&Mapping::CopyTo>("copyTo"), InstanceMethod<&Mapping::Unmap>("unmap")});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    exports.Set("Mapping", f);
  }

  Mapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapping>(info) {
    if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsBoolean())
      throw Napi::TypeError::New(info.Env(), "Mapping is created by the addon only");
    state_ = *info[0].As<Napi::External<StatePtr>>().Data();
    writable_ = info[1].As<Napi::Boolean>().Value();
    if (writable_) {
      // The ArrayBuffer keeps its own reference to the state: if it is collected
      // before unmap(), its finalizer (on the JS thread) releases the memory.
      auto* hold = new StatePtr(state_);
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
          info.Env(), state_->addr, state_->bytes,
          [](Napi::Env, void*, StatePtr* h) { delete h; }, hold);
      buffer_ = Napi::Persistent(ab);
    }
  }

 private:
  StatePtr state_;
  bool writable_ = false;
  Napi::Reference<Napi::ArrayBuffer> buffer_;

  MapState& Live(Napi::Env env, const char* op) {
    if (!state_ || !state_->mapped)
      ThrowXenError(env, std::string(KindName(state_->kind)) + " " + op, EBADF, "already unmapped");
    return *state_;
  }

  size_t Offset(const Napi::CallbackInfo& info, const char* op, size_t width, size_t align) {
    MapState& s = Live(info.Env(), op);
    uint32_t off = ArgU32(info, 0, "offset");
    if (static_cast<size_t>(off) + width > s.bytes)
      ThrowXenError(info.Env(), std::string(KindName(s.kind)) + " " + op, ERANGE,
                    "offset " + std::to_string(off) + " outside 0.." + std::to_string(s.bytes));
    if (off % align != 0)
      ThrowXenError(info.Env(), std::string(KindName(s.kind)) + " " + op, EINVAL,
                    "offset " + std::to_string(off) + " is not aligned");
    return off;
  }

  Napi::Value Buffer(const Napi::CallbackInfo& info) {
    if (!writable_)
      ThrowXenError(info.Env(), "read-only mapping buffer", EACCES,
                    "a read-only mapping has no ArrayBuffer; read it through ReadOnlyView");
    return buffer_.Value();
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(state_->bytes));
  }
  Napi::Value Mapped(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), state_->mapped);
  }
  Napi::Value ReadU8(const Napi::CallbackInfo& info) {
    size_t off = Offset(info, "readU8", 1, 1);
    return Napi::Number::New(info.Env(), static_cast<const volatile uint8_t*>(state_->addr)[off]);
  }
  Napi::Value ReadU16(const Napi::CallbackInfo& info) {
    size_t off = Offset(info, "readU16", 2, 1);
    uint16_t v;
    memcpy(&v, static_cast<const uint8_t*>(state_->addr) + off, 2);
    return Napi::Number::New(info.Env(), v);
  }
  Napi::Value ReadU32(const Napi::CallbackInfo& info) {
    size_t off = Offset(info, "readU32", 4, 1);
    uint32_t v;
    memcpy(&v, static_cast<const uint8_t*>(state_->addr) + off, 4);
    return Napi::Number::New(info.Env(), v);
  }
  Napi::Value Load32(const Napi::CallbackInfo& info) {
    size_t off = Offset(info, "load32", 4, 4);
    auto* p = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(state_->addr) + off);
    return Napi::Number::New(info.Env(), __atomic_load_n(p, __ATOMIC_ACQUIRE));
  }
  void Store32(const Napi::CallbackInfo& info) {
    if (!writable_) ThrowXenError(info.Env(), "read-only mapping store32", EACCES);
    size_t off = Offset(info, "store32", 4, 4);
    uint32_t v = ArgU32(info, 1, "value");
    auto* p = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(state_->addr) + off);
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
  }
  // copyTo(target: Uint8Array, targetOffset, offset, length)
  void CopyTo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MapState& s = Live(env, "copyTo");
    if (info.Length() < 4 || !info[0].IsTypedArray())
      throw Napi::TypeError::New(env, "copyTo(target: Uint8Array, targetOffset, offset, length)");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_uint8_array) throw Napi::TypeError::New(env, "target must be a Uint8Array");
    Napi::Uint8Array target = info[0].As<Napi::Uint8Array>();
    uint32_t toff = ArgU32(info, 1, "targetOffset");
    uint32_t off = ArgU32(info, 2, "offset");
    uint32_t len = ArgU32(info, 3, "length");
    if (static_cast<size_t>(off) + len > s.bytes || static_cast<size_t>(toff) + len > target.ElementLength())
      ThrowXenError(env, std::string(KindName(s.kind)) + " copyTo", ERANGE, "range out of bounds");
    if (len > 0) memcpy(target.Data() + toff, static_cast<const uint8_t*>(s.addr) + off, len);
  }
  void Unmap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!state_->mapped) return;
    // Detach first: from here on no JS object can reach the memory.
    if (writable_ && !buffer_.IsEmpty()) {
      Napi::ArrayBuffer ab = buffer_.Value();
      if (!ab.IsDetached()) ab.Detach();
    }
    int err = state_->Release();
    if (err != 0) ThrowXenError(env, std::string(KindName(state_->kind)) + " unmap", err);
  }
};

Napi::FunctionReference* Mapping::ctor = nullptr;

// Test-only: malloc'd memory behind an external ArrayBuffer, so the index benchmark and
// the detach-on-unmap test can run on a host without Xen.
Napi::Value NewTestBuffer(const Napi::CallbackInfo& info) {
  uint32_t bytes = ArgU32(info, 0, "bytes");
  bool writable = info.Length() < 2 || info[1].ToBoolean().Value();
  if (bytes == 0 || bytes > (64u << 20))
    ThrowXenError(info.Env(), "test buffer", EINVAL, "size must be 1..64 MiB");
  void* p = calloc(1, bytes);
  if (p == nullptr) ThrowXenError(info.Env(), "test buffer", ENOMEM);
  return NewMapping(info.Env(), MapKind::Malloc, p, (bytes + 4095) / 4096, bytes, writable, nullptr);
}

}  // namespace

Napi::Object NewMapping(Napi::Env env, MapKind kind, void* addr, size_t pages, size_t bytes,
                        bool writable, void* handle) {
  auto state = std::make_shared<MapState>(kind, addr, pages, bytes, handle);
  StatePtr* tmp = new StatePtr(state);
  Napi::External<StatePtr> ext = Napi::External<StatePtr>::New(env, tmp, [](Napi::Env, StatePtr* p) { delete p; });
  return Mapping::ctor->New({ext, Napi::Boolean::New(env, writable)});
}

void InitMapping(Napi::Env env, Napi::Object exports) {
  Mapping::Init(env, exports);
  exports.Set("newTestBuffer", Napi::Function::New(env, NewTestBuffer));
}

}  // namespace moat
