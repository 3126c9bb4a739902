from eodes_node.cli import main

main()
