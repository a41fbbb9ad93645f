/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Target shim: the shared headers compile as BPF C (clang -target bpf),
 * as C for the DPDK workers and as C++ for the control plane and tests.
 * Mode macros live here and nowhere else.
 */
#ifndef KEEL_TYPES_H
#define KEEL_TYPES_H

#if defined(__bpf__)
/* BPF: types come from linux/types.h, pulled in by the program first. */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#define KEEL_INLINE static __always_inline
#else
#include <linux/types.h>
#include <stdint.h>
#include <string.h>
#define KEEL_INLINE static inline __attribute__((always_inline))
#endif

#ifdef __cplusplus
#define KEEL_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define KEEL_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#endif
