-- One row per lead x funnel step of every pipeline the lead has been in (both CRMs), at the
-- as-of date: the row-level base for BI drill-down of the funnel marts. Logic and
-- definitions: int_lead_stage_reached.
select
    crm,
    account,
    lead_id,
    pipeline_id,
    pipeline_name,
    status_id,
    stage_name,
    stage_order,
    is_won_step,
    next_status_id,
    reached,
    reached_next,
    entered_at,
    left_at,
    hours_in_stage,
    pipeline_outcome,
    is_closed_in_pipeline,
    dropped_off_here,
    loss_reason_name,
    won_at,
    created_at,
    created_month,
    channel,
    responsible_user_id,
    manager_name
from {{ ref('int_lead_stage_reached') }}
