// The `cove` executable: everything lives in CoveCommands, so it is testable as a library.
import CoveCommands

CoveCommand.run()
