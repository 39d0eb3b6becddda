import ArgumentParser
import CoveCommands

CoveCommand.main()
