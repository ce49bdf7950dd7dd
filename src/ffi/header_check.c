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
    PcoreTreeOptions topt;
    PcoreTreeStats tstats;
    PcoreBytes b;
    PcoreStore *store = 0;
    (void)alloc; (void)bytes; (void)info; (void)cls; (void)stats; (void)topt; (void)b; (void)store;
    opt.struct_size = sizeof opt;
    tstats.struct_size = sizeof tstats;
    return opt.struct_size == 0 || PCORE_OK != 0 || PCORE_ABI_VERSION == 0 ||
           sizeof tstats.pages_per_level != PCORE_TREE_DEPTH_MAX * sizeof(uint64_t);
}
