/*
 * A small Criterion-compatible runner for the ThreadSanitizer build.
 *
 * Criterion's sandbox (BoxFort) maps its arena at addresses that
 * ThreadSanitizer reserves, so a TSan-instrumented Criterion test aborts
 * before it starts. The TSan build therefore compiles the same test sources
 * against this header, which implements the subset of Criterion they use:
 * Test(suite, name, .timeout = s, .disabled = b), cr_assert*, cr_skip_test
 * and cr_log_*. Each test runs in its own forked child, as under Criterion.
 * Messages given to the assertion macros must start with a string literal.
 */
#ifndef SHMRING_TSAN_CRITERION_H
#define SHMRING_TSAN_CRITERION_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct criterion_test_extra_data {
    int dummy;
    double timeout;
    bool disabled;
    const char *description;
};

struct cr_shim_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct criterion_test_extra_data data;
    struct cr_shim_test *next;
};

void cr_shim_register(struct cr_shim_test *t);
__attribute__((noreturn, format(printf, 4, 5))) void
cr_shim_fail(const char *file, int line, const char *what, const char *fmt, ...);
__attribute__((noreturn, format(printf, 1, 2))) void cr_shim_skip(const char *fmt, ...);
__attribute__((format(printf, 2, 3))) void cr_shim_log(const char *level, const char *fmt, ...);

#define Test(suite, name, ...)                                                                     \
    static void cr_fn_##suite##_##name(void);                                                      \
    static struct cr_shim_test cr_test_##suite##_##name = {                                        \
        #suite, #name, cr_fn_##suite##_##name,                                                     \
        (struct criterion_test_extra_data){.dummy = 0, __VA_ARGS__}, NULL};                        \
    __attribute__((constructor)) static void cr_reg_##suite##_##name(void)                         \
    {                                                                                              \
        cr_shim_register(&cr_test_##suite##_##name);                                               \
    }                                                                                              \
    static void cr_fn_##suite##_##name(void)

#define cr_assert(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            cr_shim_fail(__FILE__, __LINE__, "assertion failed: " #cond, "" __VA_ARGS__);          \
    } while (0)
#define cr_assert_not(cond, ...)     cr_assert(!(cond), __VA_ARGS__)
#define cr_assert_eq(a, b, ...)      cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...)     cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...)      cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...)     cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...)      cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...)     cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...)       cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...)   cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)  cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_fail(...)          cr_shim_fail(__FILE__, __LINE__, "failed", "" __VA_ARGS__)
#define cr_skip_test(...)            cr_shim_skip("" __VA_ARGS__)
#define cr_log_info(...)             cr_shim_log("INFO", __VA_ARGS__)
#define cr_log_warn(...)             cr_shim_log("WARN", __VA_ARGS__)
#define cr_log_error(...)            cr_shim_log("ERR", __VA_ARGS__)

#endif
