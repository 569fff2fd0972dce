from qblock.cli import main

main()
