// Instruction-set dispatch for the CPU kernels' hot loops.
//
// REALSR_CPU_CLONES compiles a function for AVX-512, AVX2 + FMA and baseline x86-64 and picks one
// at load time by CPU features. Helpers it calls must be force-inlined (REALSR_ALWAYS_INLINE) so
// they are compiled for the clone's instruction set rather than called in their baseline form.
#pragma once

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define REALSR_CPU_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define REALSR_CPU_CLONES
#endif

#if defined(__GNUC__)
#define REALSR_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define REALSR_ALWAYS_INLINE inline
#endif
