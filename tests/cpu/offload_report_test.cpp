// offload_report_test.cpp — placeholder (being written).
#include <gtest/gtest.h>
