/**
 * @file dispatch.cpp
 * @brief CPU probe and the kernel tables behind dispatch.h.
 *
 * The CPU is probed once (on first use): AVX2, FMA and F16C must all be reported, and the OS
 * must save the YMM state (GCC/Clang's __builtin_cpu_supports checks XGETBV for AVX;
 * on MSVC we check OSXSAVE and XCR0 ourselves).
 */
#include "rankcore/dispatch.h"

#include <atomic>
#include <cstdlib>

#include "rankcore/dot.h"
#include "rankcore/softmax.h"
#include "rankcore/topk.h"

#if defined(_MSC_VER) && defined(RANKCORE_X86_64)
#include <intrin.h>
#endif

namespace rankcore {
namespace {

const KernelTable serial_table = {"serial",
                                  &dot_f32_serial,
                                  &gather_dot_f32_serial,
                                  &softmax_f32_serial,
                                  &topk_kernels_serial,
                                  {nullptr, &gather_f16_serial, &gather_bf16_serial, &gather_i8_serial},
                                  {nullptr, &dequant_f16_serial, &dequant_bf16_serial, &dequant_i8_serial}};

#if defined(RANKCORE_X86_64)
const KernelTable avx2_table = {"avx2",
                                &dot_f32_avx2,
                                &gather_dot_f32_avx2,
                                &softmax_f32_avx2,
                                &topk_kernels_avx2,
                                {nullptr, &gather_f16_avx2, &gather_bf16_avx2, &gather_i8_avx2},
                                {nullptr, &dequant_f16_avx2, &dequant_bf16_avx2, &dequant_i8_avx2}};

bool cpu_has_avx2_fma() {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#elif defined(_MSC_VER)
    int r[4];
    __cpuid(r, 1);
    const bool fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, f16c = (r[2] >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return false;
    if ((_xgetbv(0) & 0x6) != 0x6) return false;  // XMM and YMM state saved by the OS
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;
#else
    return false;
#endif
}
#endif

struct Registry {
    std::vector<const KernelTable*> compiled;   // best last
    std::vector<const KernelTable*> available;  // best last
    std::atomic<const KernelTable*> active{nullptr};
    std::string env_warning;

    Registry() {
        compiled.push_back(&serial_table);
        available.push_back(&serial_table);
#if defined(RANKCORE_X86_64)
        compiled.push_back(&avx2_table);
        if (cpu_has_avx2_fma()) available.push_back(&avx2_table);
#endif
        const KernelTable* chosen = available.back();
        if (const char* env = std::getenv("RANKCORE_KERNEL")) {
            const std::string name(env);
            const KernelTable* requested = nullptr;
            for (const KernelTable* t : available)
                if (name == t->name) requested = t;
            if (requested) {
                chosen = requested;
            } else if (!name.empty()) {
                std::string names;
                for (const KernelTable* t : available) names += (names.empty() ? "" : ", ") + std::string(t->name);
                env_warning = "RANKCORE_KERNEL=" + name + " is not an available kernel (available: " + names +
                              "); using " + chosen->name;
            }
        }
        active.store(chosen);
    }
};

Registry& registry() {
    static Registry r;
    return r;
}

std::vector<std::string> names_of(const std::vector<const KernelTable*>& tables) {
    std::vector<std::string> out;
    for (const KernelTable* t : tables) out.emplace_back(t->name);
    return out;
}

}  // namespace

std::vector<std::string> compiled_kernel_names() { return names_of(registry().compiled); }

std::vector<std::string> available_kernel_names() { return names_of(registry().available); }

const KernelTable* find_kernel(const std::string& name) {
    for (const KernelTable* t : registry().available)
        if (name == t->name) return t;
    return nullptr;
}

const KernelTable& active_kernel() { return *registry().active.load(); }

bool set_active_kernel(const std::string& name) {
    const KernelTable* t = find_kernel(name);
    if (!t) return false;
    registry().active.store(t);
    return true;
}

std::string kernel_env_warning() { return registry().env_warning; }

std::vector<std::string> kernel_function_names() {
    std::vector<std::string> out;
    for (const KernelTable* t : registry().compiled) {
        const std::string k(t->name);
        for (const char* op : {"dot_f32", "gather_f32", "softmax_f32", "topk_f32"}) out.push_back(k + "/" + op);
        for (int d = 1; d < n_table_dtypes; ++d) {
            const std::string dt = dtype_name(static_cast<TableDtype>(d));
            if (t->gather_q[d]) out.push_back(k + "/gather_" + dt);
            if (t->dequant[d]) out.push_back(k + "/topk_" + dt);
        }
    }
    return out;
}

}  // namespace rankcore
