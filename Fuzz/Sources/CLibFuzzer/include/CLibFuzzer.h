// libFuzzer's driver entry point (compiler-rt, FuzzerInterface.h / FuzzerDriver.cpp). Declared here so
// a Swift executable can keep its own main (SwiftPM renames executable mains to <Target>_main and
// points `main` at it on Linux) and hand control to libFuzzer from there.
#ifndef COVE_CLIBFUZZER_H
#define COVE_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv,
                        int (*callback)(const uint8_t *data, size_t size));

#endif
