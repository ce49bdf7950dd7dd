// Uses an installed pcore through pcore.hpp.
#include <cstdio>
#include <cstring>

#include <pcore.hpp>

int main() {
  try {
    pcore::Store store = pcore::Store::in_memory();
    const pcore::Allocation a = store.allocate(16, 1);
    std::memcpy(a.writable, "installed pcore", 16);
    store.publish_in_place(a.id, 16);
    store.commit();
    const pcore::Bytes b = store.read(a.id);
    if (b.len != 16 || std::memcmp(b.data, "installed pcore", 16) != 0) {
      std::fprintf(stderr, "read back differs\n");
      return 1;
    }
    std::printf("consumer ok\n");
    return 0;
  } catch (const pcore::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
