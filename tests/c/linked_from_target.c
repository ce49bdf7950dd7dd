/* A plain C program linked against the cargo output (`-L target/<profile> -lpcore`, an rpath
 * to that directory, no install): it must start, and it uses the ABI a little. */
#include <stdio.h>
#include "pcore.h"

int main(void) {
    const uint32_t abi = pcore_abi_version();
    if ((abi >> 16) != (PCORE_ABI_VERSION >> 16)) {
        fprintf(stderr, "loaded ABI %u.%u, built for %u\n", abi >> 16, abi & 0xffffu, PCORE_ABI_VERSION >> 16);
        return 2;
    }
    PcoreStoreOptions options;
    PcoreStore *store = NULL;
    if (pcore_store_options_init(&options) != PCORE_OK) return 3;
    options.flags = PCORE_OPEN_IN_MEMORY;
    if (pcore_store_open(NULL, &options, &store) != PCORE_OK) return 4;
    PcoreAllocResult node;
    node.struct_size = sizeof node;
    int32_t rc = pcore_node_allocate(store, 100, 1, &node);
    if (rc != PCORE_OK) {
        fprintf(stderr, "allocate: %s: %s\n", pcore_status_name(rc), pcore_last_error_message());
        return 5;
    }
    printf("abi %u.%u, node capacity %zu\n", abi >> 16, abi & 0xffffu, node.capacity);
    return pcore_store_close(store) == PCORE_OK ? 0 : 6;
}
