/* A C11 program linked against libpcore.a (pcore::pcore_static): proves the static library
 * links with only its declared dependencies and that pcore.h is usable from C. */
#include <stdio.h>
#include <string.h>

#include "pcore.h"

#define CHECK(expr)                                                                       \
  do {                                                                                    \
    int32_t status_ = (expr);                                                             \
    if (status_ != PCORE_OK) {                                                            \
      fprintf(stderr, "%s -> %s: %s\n", #expr, pcore_status_name(status_),                \
              pcore_last_error_message());                                                \
      return 1;                                                                           \
    }                                                                                     \
  } while (0)

int main(void) {
  PcoreStoreOptions options;
  PcoreStore* store = NULL;
  PcoreAllocResult alloc;
  PcoreNodeBytes bytes;
  uint64_t epoch = 0;
  const char text[] = "hello, pcore";

  if ((pcore_abi_version() >> 16) != (PCORE_ABI_VERSION >> 16)) {
    fprintf(stderr, "ABI mismatch\n");
    return 1;
  }
  CHECK(pcore_store_options_init(&options));
  options.flags = PCORE_OPEN_IN_MEMORY;
  CHECK(pcore_store_open(NULL, &options, &store));
  alloc.struct_size = sizeof alloc;
  CHECK(pcore_node_allocate(store, sizeof(text), 5, &alloc));
  CHECK(pcore_node_publish(store, alloc.id, text, sizeof(text), NULL));
  CHECK(pcore_store_commit(store, &epoch));
  CHECK(pcore_node_read(store, alloc.id, &bytes));
  if (bytes.len != sizeof(text) || memcmp(bytes.data, text, sizeof(text)) != 0) {
    fprintf(stderr, "read back differs\n");
    return 1;
  }
  CHECK(pcore_store_close(store));
  if (pcore_store_close(store) != PCORE_BAD_HANDLE) {
    fprintf(stderr, "second close was not PCORE_BAD_HANDLE\n");
    return 1;
  }
  printf("static link ok (epoch %llu)\n", (unsigned long long)epoch);
  return 0;
}
