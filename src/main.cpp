#include "audsync/cli/cli.hpp"

int main(int argc, char** argv) { return audsync::cli::Run(argc, argv); }
