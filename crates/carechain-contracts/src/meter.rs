//! Fuel metering by instrumentation: every straight-line run of instructions first charges
//! its cost, from the genesis [`FuelCosts`], to a global the runtime sets and reads. The
//! fuel a call burns is thus a function of the code and the cost table alone, never of the
//! interpreter's internals, and the same on every validator.
//!
//! A run ends after each control instruction (`block`, `loop`, `if`, `else`, `end`, branches,
//! `return`, `unreachable`); a loop's body charges on every iteration. A run is charged in
//! full on entry (a branch out of its middle still pays for the rest: deterministic, and
//! at most one run's worth). When the counter goes below zero the code traps, and the
//! runtime reports out of fuel.

use carechain_types::FuelCosts;
use wasm_encoder::reencode::{Error, Reencode, RoundtripReencoder, utils};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, GlobalSection, GlobalType,
    Instruction, Module, SectionId, ValType,
};
use wasmparser::{FunctionBody, Operator};

/// The export under which instrumented code exposes its fuel counter (an `i64` global).
pub const FUEL_GLOBAL: &str = "__carechain_fuel";

/// Why code could not be instrumented (it passed [`crate::check_code`], so only a bug).
#[derive(Debug, thiserror::Error)]
#[error("cannot instrument code: {0}")]
pub struct MeterError(String);

/// The fuel one instruction costs.
pub fn cost(op: &Operator<'_>, c: &FuelCosts) -> u64 {
    use Operator as O;
    let extra = match op {
        O::I32Load { .. }
        | O::I64Load { .. }
        | O::I32Load8S { .. }
        | O::I32Load8U { .. }
        | O::I32Load16S { .. }
        | O::I32Load16U { .. }
        | O::I64Load8S { .. }
        | O::I64Load8U { .. }
        | O::I64Load16S { .. }
        | O::I64Load16U { .. }
        | O::I64Load32S { .. }
        | O::I64Load32U { .. }
        | O::I32Store { .. }
        | O::I64Store { .. }
        | O::I32Store8 { .. }
        | O::I32Store16 { .. }
        | O::I64Store8 { .. }
        | O::I64Store16 { .. }
        | O::I64Store32 { .. } => c.memory_access,
        O::Call { .. } | O::CallIndirect { .. } => c.call,
        O::I32DivS | O::I32DivU | O::I32RemS | O::I32RemU => c.division,
        O::I64DivS | O::I64DivU | O::I64RemS | O::I64RemU => c.division,
        O::MemoryGrow { .. } => c.memory_grow,
        O::MemoryCopy { .. }
        | O::MemoryFill { .. }
        | O::MemoryInit { .. }
        | O::TableCopy { .. }
        | O::TableFill { .. }
        | O::TableInit { .. }
        | O::TableGrow { .. } => c.bulk_memory,
        _ => 0,
    };
    u64::from(c.instruction) + u64::from(extra)
}

/// Whether a run of straight-line code ends after `op`. Entering a `block` transfers no
/// control (what follows runs whenever the `block` does), so it continues the run; its `end`
/// is a branch target and starts a new one.
fn ends_run(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
    )
}

struct Meter<'c> {
    costs: &'c FuelCosts,
    /// Parameter count of each type (0 for non-function types).
    params: Vec<u32>,
    /// The type of each defined function, in order.
    func_types: Vec<u32>,
    /// The next function body to instrument.
    next_body: usize,
    /// Index of the fuel global, once the global section is known.
    fuel: Option<u32>,
    globals_done: bool,
    exports_done: bool,
}

impl Meter<'_> {
    fn fuel_type() -> GlobalType {
        GlobalType {
            val_type: ValType::I64,
            mutable: true,
            shared: false,
        }
    }

    /// Charges `amount` before a run: the fuel left, less `amount`, is kept in the function's
    /// scratch local `scratch` to be tested (one global read and one write per run).
    fn charge(&self, f: &mut wasm_encoder::Function, amount: u64, scratch: u32) {
        let Some(g) = self.fuel else { return };
        // `amount` is bounded by a function body's size times the largest cost: far below 2^63.
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        f.instruction(&Instruction::GlobalGet(g));
        f.instruction(&Instruction::I64Const(amount));
        f.instruction(&Instruction::I64Sub);
        f.instruction(&Instruction::LocalTee(scratch));
        f.instruction(&Instruction::GlobalSet(g));
        f.instruction(&Instruction::LocalGet(scratch));
        f.instruction(&Instruction::I64Const(0));
        f.instruction(&Instruction::I64LtS);
        f.instruction(&Instruction::If(BlockType::Empty));
        f.instruction(&Instruction::Unreachable);
        f.instruction(&Instruction::End);
    }
}

fn at_or_after(id: Option<SectionId>, first: SectionId) -> bool {
    // The binary order of the known sections (custom sections never reach the hook).
    fn rank(id: SectionId) -> u8 {
        match id {
            SectionId::Type => 1,
            SectionId::Import => 2,
            SectionId::Function => 3,
            SectionId::Table => 4,
            SectionId::Memory => 5,
            SectionId::Tag => 6,
            SectionId::Global => 7,
            SectionId::Export => 8,
            SectionId::Start => 9,
            SectionId::Element => 10,
            SectionId::DataCount => 11,
            SectionId::Code => 12,
            SectionId::Data => 13,
            _ => 0,
        }
    }
    id.is_none_or(|id| rank(id) >= rank(first))
}

impl Reencode for Meter<'_> {
    type Error = MeterError;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), Error<MeterError>> {
        for group in section.clone() {
            for sub in group?.types() {
                self.params.push(match &sub.composite_type.inner {
                    wasmparser::CompositeInnerType::Func(f) => f.params().len() as u32,
                    _ => 0,
                });
            }
        }
        utils::parse_type_section(self, types, section)
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), Error<MeterError>> {
        for ty in section.clone() {
            self.func_types.push(ty?);
        }
        utils::parse_function_section(self, functions, section)
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), Error<MeterError>> {
        // No imported globals pass the deploy check: the next index is the count.
        let index = section.count();
        utils::parse_global_section(self, globals, section)?;
        globals.global(Self::fuel_type(), &ConstExpr::i64_const(0));
        self.fuel = Some(index);
        self.globals_done = true;
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<MeterError>> {
        utils::parse_export_section(self, exports, section)?;
        if let Some(g) = self.fuel {
            exports.export(FUEL_GLOBAL, ExportKind::Global, g);
        }
        self.exports_done = true;
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), Error<MeterError>> {
        if !self.globals_done
            && before != Some(SectionId::Global)
            && at_or_after(before, SectionId::Export)
        {
            let mut globals = GlobalSection::new();
            globals.global(Self::fuel_type(), &ConstExpr::i64_const(0));
            module.section(&globals);
            self.fuel = Some(0);
            self.globals_done = true;
        }
        if !self.exports_done
            && before != Some(SectionId::Export)
            && at_or_after(before, SectionId::Start)
        {
            let mut exports = ExportSection::new();
            if let Some(g) = self.fuel {
                exports.export(FUEL_GLOBAL, ExportKind::Global, g);
            }
            module.section(&exports);
            self.exports_done = true;
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), Error<MeterError>> {
        // The function's locals, and one more i64 after them: the meter's scratch.
        let params = self
            .func_types
            .get(self.next_body)
            .and_then(|t| self.params.get(*t as usize))
            .copied()
            .unwrap_or(0);
        self.next_body += 1;
        let mut locals = Vec::new();
        let mut declared = 0u32;
        for pair in func.get_locals_reader()? {
            let (n, ty) = pair?;
            declared = declared.saturating_add(n);
            locals.push((n, self.val_type(ty)?));
        }
        locals.push((1, wasm_encoder::ValType::I64));
        let scratch = params.saturating_add(declared);
        let mut f = wasm_encoder::Function::new(locals);
        let mut reader = func.get_operators_reader()?;
        let mut ops = Vec::new();
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        // The cost from each instruction to the end of its run.
        let mut run_cost = vec![0u64; ops.len()];
        let mut acc = 0u64;
        for i in (0..ops.len()).rev() {
            let c = cost(&ops[i], self.costs);
            acc = if ends_run(&ops[i]) { c } else { acc + c };
            run_cost[i] = acc;
        }
        let last = ops.len().saturating_sub(1);
        let mut start_of_run = true;
        for (i, op) in ops.into_iter().enumerate() {
            if start_of_run {
                self.charge(&mut f, run_cost[i], scratch);
            }
            start_of_run = ends_run(&op) && i < last;
            let ins = RoundtripReencoder
                .instruction(op)
                .map_err(|e| Error::UserError(MeterError(format!("{e:?}"))))?;
            f.instruction(&ins);
        }
        code.function(&f);
        Ok(())
    }
}

/// Instruments `code` (already accepted by [`crate::check_code`]) with fuel counting.
pub fn instrument(code: &[u8], costs: &FuelCosts) -> Result<Vec<u8>, MeterError> {
    let mut meter = Meter {
        costs,
        params: Vec::new(),
        func_types: Vec::new(),
        next_body: 0,
        fuel: None,
        globals_done: false,
        exports_done: false,
    };
    let mut module = Module::new();
    meter
        .parse_core_module(&mut module, wasmparser::Parser::new(0), code)
        .map_err(|e| MeterError(format!("{e:?}")))?;
    Ok(module.finish())
}
