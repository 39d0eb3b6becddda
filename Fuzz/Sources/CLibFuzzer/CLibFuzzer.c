// Intentionally empty: the target exists to export CLibFuzzer.h to Swift. libFuzzer itself is linked
// by `-sanitize=fuzzer`.
#include "CLibFuzzer.h"
