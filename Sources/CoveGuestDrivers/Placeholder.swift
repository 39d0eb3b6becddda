enum DriversPlaceholder {}
