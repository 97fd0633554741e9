// CAF's unit-test engine, without its main: the test coordinator fixture needs
// `caf::test::engine` (argc/argv), Catch provides the main.
#define CAF_TEST_NO_MAIN
#include "caf/test/unit_test_impl.hpp"
