// Grant tables: mapping foreign grants (gntdev), batched grant copy (gntdev ioctl) and
// sharing our own pages (gntalloc). One gntdev and one gntalloc handle per process,
// opened on first use and kept for its lifetime: mappings outlive any JS object that
// could own the handle, and the kernel releases everything at exit.
#include <sys/mman.h>
extern "C" {
#include <xengnttab.h>
}

#include <cerrno>
#include <vector>

#include "common.h"

namespace moat {

namespace {

constexpr uint32_t kMaxPages = 1024;  // one request; gntdev's own default limit is similar
constexpr uint32_t kMaxCopySegments = 4096;

xengnttab_handle* gnttab = nullptr;
xengntshr_handle* gntshr = nullptr;

xengnttab_handle* Gnttab(Napi::Env env) {
  if (gnttab == nullptr) {
    errno = 0;
    gnttab = xengnttab_open(QuietLogger(), 0);
    if (gnttab == nullptr) ThrowXenError(env, "open /dev/xen/gntdev", errno ? errno : ENODEV);
  }
  return gnttab;
}

xengntshr_handle* Gntshr(Napi::Env env) {
  if (gntshr == nullptr) {
    errno = 0;
    gntshr = xengntshr_open(QuietLogger(), 0);
    if (gntshr == nullptr) ThrowXenError(env, "open /dev/xen/gntalloc", errno ? errno : ENODEV);
  }
  return gntshr;
}

std::vector<uint32_t> U32Array(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsArray()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an array");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<uint32_t> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
      throw Napi::RangeError::New(info.Env(), std::string(what) + " must hold integers in 0..2^32-1");
    out.push_back(static_cast<uint32_t>(d));
  }
  return out;
}

// mapGrants(domain, refs[], writable) -> Mapping
Napi::Value MapGrants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dom = ArgU32(info, 0, "domain");
  std::vector<uint32_t> refs = U32Array(info, 1, "refs");
  bool writable = info.Length() > 2 && info[2].ToBoolean().Value();
  const char* op = writable ? "xengnttab_map_grant_refs (writable)" : "xengnttab_map_grant_refs (read-only)";
  if (refs.empty() || refs.size() > kMaxPages)
    ThrowXenError(env, op, EINVAL, "1.." + std::to_string(kMaxPages) + " refs per mapping");
  xengnttab_handle* h = Gnttab(env);
  errno = 0;
  void* addr = xengnttab_map_domain_grant_refs(h, refs.size(), dom, refs.data(),
                                               writable ? PROT_READ | PROT_WRITE : PROT_READ);
  if (addr == nullptr) ThrowXenError(env, op, errno ? errno : EINVAL, "domain " + std::to_string(dom));
  return NewMapping(env, MapKind::Gntdev, addr, refs.size(), refs.size() * 4096, writable, h);
}

// shareGrants(domain, count, writable) -> { refs: number[], mapping: Mapping }
Napi::Value ShareGrants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t dom = ArgU32(info, 0, "domain");
  uint32_t count = ArgU32(info, 1, "count");
  bool writable = info.Length() > 2 && info[2].ToBoolean().Value();
  if (count == 0 || count > kMaxPages)
    ThrowXenError(env, "xengntshr_share_pages", EINVAL, "1.." + std::to_string(kMaxPages) + " pages");
  xengntshr_handle* h = Gntshr(env);
  std::vector<uint32_t> refs(count);
  errno = 0;
  void* addr = xengntshr_share_pages(h, dom, static_cast<int>(count), refs.data(), writable ? 1 : 0);
  if (addr == nullptr) ThrowXenError(env, "xengntshr_share_pages", errno ? errno : ENOMEM);
  // Our own pages are always writable by us, whatever the grant says.
  Napi::Object mapping = NewMapping(env, MapKind::Gntshr, addr, count, count * 4096, true, h);
  Napi::Array arr = Napi::Array::New(env, count);
  for (uint32_t i = 0; i < count; i++) arr.Set(i, refs[i]);
  Napi::Object out = Napi::Object::New(env);
  out.Set("refs", arr);
  out.Set("mapping", mapping);
  return out;
}

// grantCopy(segments: {toGrant, domain, ref, offset, length, buffer, bufferOffset}[]) -> Int16Array
Napi::Value GrantCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "segments must be an array");
  Napi::Array segs = info[0].As<Napi::Array>();
  uint32_t n = segs.Length();
  if (n > kMaxCopySegments)
    ThrowXenError(env, "xengnttab_grant_copy", E2BIG, "at most " + std::to_string(kMaxCopySegments) + " segments");
  std::vector<xengnttab_grant_copy_segment_t> c(n);
  std::vector<Napi::Reference<Napi::Value>> keep;  // the buffers stay alive during the copy
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = segs.Get(i);
    if (!v.IsObject()) throw Napi::TypeError::New(env, "segment must be an object");
    Napi::Object s = v.As<Napi::Object>();
    auto num = [&](const char* k) -> uint32_t {
      Napi::Value x = s.Get(k);
      double d = x.IsNumber() ? x.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
        throw Napi::RangeError::New(env, std::string("segment.") + k + " must be a non-negative integer");
      return static_cast<uint32_t>(d);
    };
    bool to_grant = s.Get("toGrant").ToBoolean().Value();
    uint32_t dom = num("domain"), ref = num("ref"), off = num("offset"), len = num("length");
    uint32_t boff = num("bufferOffset");
    Napi::Value b = s.Get("buffer");
    if (!b.IsTypedArray() || b.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, "segment.buffer must be a Uint8Array");
    Napi::Uint8Array buf = b.As<Napi::Uint8Array>();
    if (dom > 0xffff) ThrowXenError(env, "xengnttab_grant_copy", EINVAL, "domain id above 65535");
    // Xen checks offset+len against the page itself (GNTST_bad_copy_arg); the local
    // side is ours to check, since it is a pointer into JS memory.
    if (off + static_cast<uint64_t>(len) > 4096)
      ThrowXenError(env, "xengnttab_grant_copy", EINVAL, "segment crosses the granted page");
    if (static_cast<uint64_t>(boff) + len > buf.ElementLength())
      ThrowXenError(env, "xengnttab_grant_copy", ERANGE, "segment outside its local buffer");
    auto& seg = c[i];
    seg.len = static_cast<uint16_t>(len);
    seg.status = 0;
    if (to_grant) {
      seg.flags = GNTCOPY_dest_gref;
      seg.source.virt = buf.Data() + boff;
      seg.dest.foreign.ref = ref;
      seg.dest.foreign.offset = static_cast<uint16_t>(off);
      seg.dest.foreign.domid = static_cast<uint16_t>(dom);
    } else {
      seg.flags = GNTCOPY_source_gref;
      seg.dest.virt = buf.Data() + boff;
      seg.source.foreign.ref = ref;
      seg.source.foreign.offset = static_cast<uint16_t>(off);
      seg.source.foreign.domid = static_cast<uint16_t>(dom);
    }
    keep.push_back(Napi::Persistent(b));
  }
  Napi::Int16Array status = Napi::Int16Array::New(env, n);
  if (n == 0) return status;
  xengnttab_handle* h = Gnttab(env);
  if (xengnttab_grant_copy(h, n, c.data()) != 0) ThrowXenError(env, "xengnttab_grant_copy", errno);
  for (uint32_t i = 0; i < n; i++) status[i] = c[i].status;
  return status;
}

}  // namespace

void InitGrants(Napi::Env env, Napi::Object exports) {
  exports.Set("mapGrants", Napi::Function::New(env, MapGrants));
  exports.Set("shareGrants", Napi::Function::New(env, ShareGrants));
  exports.Set("grantCopy", Napi::Function::New(env, GrantCopy));
}

}  // namespace moat
