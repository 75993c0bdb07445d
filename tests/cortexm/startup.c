/*
 * Vector table and reset handler for the Cortex-M0/M0+ test programs.
 *
 * Built two ways:
 *   - default: for the known-answer test under QEMU with newlib and
 *     semihosting (librdimon): the exit status of main reaches the host.
 *   - -DLK_BARE: for the measurement firmware of bench/core_metrics.sh,
 *     linked with -nostdlib: no libc at all.
 *
 * Compile with -fno-tree-loop-distribute-patterns so that the copy loops
 * below are not turned into calls to memcpy/memset.
 */
#include <stdint.h>

extern uint32_t __data_start__[], __data_end__[], __data_load__[];
extern uint32_t __bss_start__[], __bss_end__[], __stack[];

int main(void);
void lk_reset_handler(void);
void lk_fault_handler(void);

#ifndef LK_BARE
#include <stdlib.h>
#include <unistd.h>
void initialise_monitor_handles(void);
/* newlib's __libc_fini_array calls _fini; crti.o is not linked. */
void _init(void);
void _fini(void);
void _init(void) {}
void _fini(void) {}
#endif

void lk_reset_handler(void)
{
    uint32_t *s = __data_load__, *d = __data_start__;

    while (d < __data_end__)
        *d++ = *s++;
    for (d = __bss_start__; d < __bss_end__;)
        *d++ = 0;
#ifdef LK_BARE
    (void)main();
    for (;;)
        ;
#else
    initialise_monitor_handles();
    exit(main());
#endif
}

/* Any fault (a bad pointer, an unaligned access, an undefined instruction):
 * under QEMU, end the run at once with a distinctive status instead of
 * spinning until the host's timeout. */
void lk_fault_handler(void)
{
#ifndef LK_BARE
    static const char msg[] = "FAIL: hard fault\n";
    (void)write(2, msg, sizeof msg - 1);
    _exit(99);
#else
    for (;;)
        ;
#endif
}

__attribute__((section(".vectors"), used))
static void (*const lk_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)__stack, /* initial stack pointer */
    lk_reset_handler,
    lk_fault_handler,                   /* NMI */
    lk_fault_handler,                   /* HardFault */
    0, 0, 0, 0, 0, 0, 0,                /* reserved on ARMv6-M */
    lk_fault_handler,                   /* SVCall */
    0, 0,
    lk_fault_handler,                   /* PendSV */
    lk_fault_handler,                   /* SysTick */
};
