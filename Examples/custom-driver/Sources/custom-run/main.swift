// The whole of a custom runner: register the driver under the name images use, then hand over to
// Cove's command line (`custom-run run IMAGE`, `custom-run check IMAGE`, ...).
import CoveCommands
import CoveScenario

DriverRegistry.register("cove-dma-mini") { MiniCopyDriver() }
CoveCommand.run()
