from fakedetect.cli import main

main()
