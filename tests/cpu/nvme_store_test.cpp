// nvme_store_test.cpp — placeholder (being written).
#include <gtest/gtest.h>
