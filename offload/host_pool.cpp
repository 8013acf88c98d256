// host_pool.cpp — placeholder (being written).
