-- One row per stay of a lead (both CRMs) in a stage, with entered/left times (left_at null =
-- still there).
--   amoCRM: the stage it was created in (the `before` side of its first status change, or its
--   current stage when it never moved), then the `after` side of every status change.
--   Bitrix24: every arrival in crm.stagehistory.list; a converted Bitrix24 lead's arrivals
--   (pipeline `lead`) belong to the deal it became, before the deal's own. A Bitrix24 lead
--   with no history row at all gets its current stage at created_at.
with

leads as (

    select * from {{ ref('int_leads__enriched') }}

),

cutoff as (

    select day_after_as_of_date from {{ ref('int_as_of_date') }}

),

amocrm_events as (

    select
        'amocrm_' || cast(events.lead_id as varchar) as lead_id,
        events.account,
        events.event_id,
        events.changed_at,
        cast(events.pipeline_id_before as varchar) as pipeline_id_before,
        cast(events.status_id_before as varchar) as status_id_before,
        cast(events.pipeline_id_after as varchar) as pipeline_id_after,
        cast(events.status_id_after as varchar) as status_id_after
    -- every event, also those after the as-of date: the first one says where the lead
    -- started; only the arrivals up to the as-of date are stays (amocrm_later)
    from {{ ref('stg_amocrm__lead_status_events') }} as events

),

amocrm_numbered as (

    select
        amocrm_events.*,
        row_number() over (
            partition by amocrm_events.account, amocrm_events.lead_id
            order by amocrm_events.changed_at, amocrm_events.event_id
        ) as event_seq
    from amocrm_events

),

amocrm_initial as (

    select
        leads.account,
        leads.lead_id,
        coalesce(first_event.pipeline_id_before, leads.pipeline_id) as pipeline_id,
        coalesce(first_event.status_id_before, leads.status_id) as status_id,
        leads.created_at as entered_at,
        0 as arrival_order,
        '' as tie_breaker
    from leads
    left join amocrm_numbered as first_event
        on leads.account = first_event.account
        and leads.lead_id = first_event.lead_id
        and first_event.event_seq = 1
    where leads.crm = 'amocrm'

),

amocrm_later as (

    select
        events.account,
        events.lead_id,
        events.pipeline_id_after as pipeline_id,
        events.status_id_after as status_id,
        events.changed_at as entered_at,
        1 as arrival_order,
        events.event_id as tie_breaker
    from amocrm_numbered as events
    inner join leads
        on events.account = leads.account
        and events.lead_id = leads.lead_id
    where events.changed_at < (select day_after_as_of_date from cutoff)

),

b24_deals as (

    select account, deal_id, source_lead_id from {{ ref('stg_bitrix24__deals') }}

),

bitrix24_arrivals as (

    select
        history.account,
        case
            when history.entity_type = 'deal'
                then 'bitrix24_deal_' || cast(history.owner_id as varchar)
            when converted.deal_id is not null
                then 'bitrix24_deal_' || cast(converted.deal_id as varchar)
            else 'bitrix24_lead_' || cast(history.owner_id as varchar)
        end as lead_id,
        case
            when history.entity_type = 'deal'
                then 'deal_' || cast(history.category_id as varchar)
            else 'lead'
        end as pipeline_id,
        history.stage_id as status_id,
        history.changed_at as entered_at,
        -- a converted lead's stays come before its deal's, whatever the clocks say
        case when history.entity_type = 'lead' then 0 else 1 end as arrival_order,
        {{ dbt.right("'0000000000000000000' || cast(history.history_id as varchar)", 19) }}
            as tie_breaker
    from {{ ref('stg_bitrix24__stage_history') }} as history
    left join b24_deals as converted
        on history.entity_type = 'lead'
        and history.account = converted.account
        and history.owner_id = converted.source_lead_id

),

bitrix24_known as (

    select bitrix24_arrivals.*
    from bitrix24_arrivals
    inner join leads
        on bitrix24_arrivals.account = leads.account
        and bitrix24_arrivals.lead_id = leads.lead_id
    where bitrix24_arrivals.entered_at < (select day_after_as_of_date from cutoff)

),

bitrix24_first_arrivals as (

    select
        account,
        lead_id,
        pipeline_id,
        status_id,
        row_number() over (
            partition by account, lead_id order by arrival_order, entered_at, tie_breaker
        ) as arrival_seq
    from bitrix24_arrivals

),

-- no arrival up to the as-of date: the lead sits where its first arrival ever put it (when
-- all its history is later), else in its current stage
bitrix24_without_history as (

    select
        leads.account,
        leads.lead_id,
        coalesce(first_arrival.pipeline_id, leads.pipeline_id) as pipeline_id,
        coalesce(first_arrival.status_id, leads.status_id) as status_id,
        leads.created_at as entered_at,
        0 as arrival_order,
        '' as tie_breaker
    from leads
    left join bitrix24_first_arrivals as first_arrival
        on leads.account = first_arrival.account
        and leads.lead_id = first_arrival.lead_id
        and first_arrival.arrival_seq = 1
    where leads.crm = 'bitrix24'
        and not exists (
            select 1 from bitrix24_known
            where bitrix24_known.account = leads.account
                and bitrix24_known.lead_id = leads.lead_id
        )

),

stays as (

    select * from amocrm_initial
    union all
    select * from amocrm_later
    union all
    select * from bitrix24_known
    union all
    select * from bitrix24_without_history

),

sequenced as (

    select
        account,
        lead_id,
        cast(row_number() over (
            partition by account, lead_id
            order by arrival_order, entered_at, tie_breaker
        ) - 1 as integer) as stage_seq,
        pipeline_id,
        status_id,
        entered_at
    from stays

),

final as (

    select
        account,
        lead_id,
        stage_seq,
        pipeline_id,
        status_id,
        entered_at,
        lead(entered_at) over (partition by account, lead_id order by stage_seq) as left_at
    from sequenced

)

select * from final
