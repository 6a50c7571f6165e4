// longquant command line entry point.
#include <cstdio>
int main(int argc, char** argv) {
  std::puts("longquant: under construction");
  return 0;
}
