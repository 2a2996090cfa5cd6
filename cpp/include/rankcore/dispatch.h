/**
 * @file dispatch.h
 * @brief Run-time kernel selection: one function-pointer table per ISA.
 *
 * Kernels: "serial" (portable C++, always available) and "avx2" (AVX2 + FMA + F16C, x86-64 only,
 * available when the CPU and OS support it). The CPU is probed once; the best available
 * table becomes active unless the environment variable `RANKCORE_KERNEL` names another
 * available kernel. `set_active_kernel` switches at run time (used by tests to force a
 * kernel). A compute call reads the active table once at its start, so switching while a
 * call runs affects only later calls.
 */
#pragma once

#include <string>
#include <vector>

#include "rankcore/quant.h"
#include "rankcore/types.h"

namespace rankcore {

struct TopKKernels;  // topk.h

/// The per-ISA operations the scoring pipeline needs. See dot.h, quant.h and softmax.h for contracts.
struct KernelTable {
    const char* name;
    float (*dot)(const float* a, const float* b, std::size_t n);
    void (*gather_dot)(const float* table, index_t ld, index_t dim, const float* user, const index_t* rows,
                       index_t n, const float* bias, float* out);
    bool (*softmax)(const float* logits, index_t n, float* scores);
    const TopKKernels* topk;  ///< the catalog-wide top-K scan (topk.h)
    /// Gathers of compressed tables (quant.h), indexed by TableDtype; entry 0 (float32) is nullptr
    /// (float32 tables use gather_dot).
    GatherQFn gather_q[n_table_dtypes];
    /// Dequantisation of consecutive compressed rows (quant.h), indexed by TableDtype; entry 0 nullptr.
    DequantFn dequant[n_table_dtypes];
};

/// Names of every kernel compiled into this build, best last ("serial", then "avx2" on x86-64).
std::vector<std::string> compiled_kernel_names();

/// Names of the compiled kernels this CPU can run.
std::vector<std::string> available_kernel_names();

/// The table of the named kernel, or nullptr if it is unknown or this CPU cannot run it.
const KernelTable* find_kernel(const std::string& name);

/// The active kernel table (never null).
const KernelTable& active_kernel();

/// Make the named kernel active. Returns false (and changes nothing) if it is unknown or unsupported.
bool set_active_kernel(const std::string& name);

/// A message about an ignored `RANKCORE_KERNEL` value, or an empty string when there is none.
std::string kernel_env_warning();

/// "<kernel>/<op>" names of every kernel function of every compiled kernel table, for build_info.
std::vector<std::string> kernel_function_names();

}  // namespace rankcore
