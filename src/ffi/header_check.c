/* Compiled by build.rs with -Wall -Wextra -Werror -pedantic: a header that does not compile
 * as strict C never ships. Touches every type so each is complete. */
#include "pcore.h"

int pcore_header_check(void);
int pcore_header_check(void) {
    PcoreStoreOptions opt;
    PcoreAllocResult alloc;
    PcoreNodeBytes bytes;
    PcoreNodeInfo info;
    PcoreClassStats cls;
    PcoreStoreStats stats;
    PcoreStore *store = 0;
    (void)alloc; (void)bytes; (void)info; (void)cls; (void)stats; (void)store;
    opt.struct_size = (uint32_t)sizeof opt;
    return opt.struct_size == 0 || PCORE_OK != 0 || PCORE_ABI_VERSION == 0;
}
