// goro/export.hpp - symbol visibility for goro's public API.
//
// The library is built with -fvisibility=hidden; only names marked GORO_API are exported.
// Internal names live in goro::internal and may change without notice.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define GORO_API __attribute__((visibility("default")))
#else
#define GORO_API
#endif
