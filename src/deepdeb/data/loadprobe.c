/* deepdeb load probe: dlopen() each name given and print the file the loader chose. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    void *h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    struct link_map *m;
    if (dlinfo(h, RTLD_DI_LINKMAP, &m) != 0) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    printf("%s\t%s\n", argv[i], m->l_name);
  }
  return 0;
}
