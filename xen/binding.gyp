{
  "targets": [
    {
      "target_name": "moat_xen",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/mapping.cc",
        "native/evtchn.cc",
        "native/grants.cc",
        "native/vchan.cc",
        "native/vchan_pump.cc",
        "native/xenbus.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lxenvchan", "-lxenevtchn", "-lxengnttab", "-lxenstore", "-lxentoollog"]
    }
  ]
}
