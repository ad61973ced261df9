from raysegment.cli import main

main()
